//! The merge of two sorted listings (rclone `fs/march`): one pass over a
//! source-side and a destination-side iterator sorted by the same key,
//! yielding every item once, as only in the source, only in the
//! destination, or in both. A leaf: no I/O, no knowledge of what is listed,
//! so the scan (two live walks) and the mirror's candidate query (two DB
//! index scans) share one rule for pairing.

use std::cmp::Ordering;
use std::iter::Peekable;

/// One step of a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged<S, D> {
    /// A source item with no destination item of the same key.
    SourceOnly(S),
    /// A destination item with no source item of the same key.
    DestOnly(D),
    /// A source and a destination item of the same key.
    Both(S, D),
}

/// The merge of `src` and `dst`, both sorted ascending by the order `cmp`
/// compares them in (an item of each side); see [`merge`].
pub struct Merge<S: Iterator, D: Iterator, F> {
    src: Peekable<S>,
    dst: Peekable<D>,
    cmp: F,
}

/// Merges two iterators sorted ascending by one key. `cmp(s, d)` orders a
/// source item against a destination item; within each side, items must
/// be in that same order and keys unique, or pairs are missed (a missed
/// pair comes out as one `SourceOnly` and one `DestOnly`). Memory: one
/// item of look-ahead per side, whatever the lengths.
pub fn merge<S, D, F>(src: S, dst: D, cmp: F) -> Merge<S::IntoIter, D::IntoIter, F>
where
    S: IntoIterator,
    D: IntoIterator,
    F: FnMut(&S::Item, &D::Item) -> Ordering,
{
    Merge {
        src: src.into_iter().peekable(),
        dst: dst.into_iter().peekable(),
        cmp,
    }
}

impl<S, D, F> Iterator for Merge<S, D, F>
where
    S: Iterator,
    D: Iterator,
    F: FnMut(&S::Item, &D::Item) -> Ordering,
{
    type Item = Merged<S::Item, D::Item>;

    fn next(&mut self) -> Option<Self::Item> {
        let order = match (self.src.peek(), self.dst.peek()) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(s), Some(d)) => (self.cmp)(s, d),
        };
        Some(match order {
            Ordering::Less => Merged::SourceOnly(self.src.next()?),
            Ordering::Greater => Merged::DestOnly(self.dst.next()?),
            Ordering::Equal => Merged::Both(self.src.next()?, self.dst.next()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_equal_keys_and_keeps_the_rest_in_order() {
        let got: Vec<_> = merge([1, 3, 4, 7], [2, 3, 7, 8, 9], |s, d| s.cmp(d)).collect();
        use Merged::*;
        assert_eq!(
            got,
            [
                SourceOnly(1),
                DestOnly(2),
                Both(3, 3),
                SourceOnly(4),
                Both(7, 7),
                DestOnly(8),
                DestOnly(9)
            ]
        );
    }

    #[test]
    fn empty_sides_and_different_item_types() {
        let none: [u8; 0] = [];
        assert_eq!(merge(none, none, |a, b| a.cmp(b)).count(), 0);
        let got: Vec<_> = merge(["a", "b"], none, |_, _| Ordering::Less).collect();
        assert_eq!(got, [Merged::SourceOnly("a"), Merged::SourceOnly("b")]);
        // Items of different types, compared through a key of each.
        let got: Vec<_> =
            merge([(1, 'x')], ["1"], |s, d| s.0.to_string().as_str().cmp(d)).collect();
        assert_eq!(got, [Merged::Both((1, 'x'), "1")]);
    }
}
