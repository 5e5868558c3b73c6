use super::*;
use crate::filter::Scope;
use crate::shard::pack::{Folder, pack};

fn plan_of(files: &[&str], n: usize) -> Plan {
    let mut t = Folder::default();
    for f in files {
        let p = Path::new(f);
        let mut d = PathBuf::new();
        for c in p.parent().unwrap().components() {
            d.push(c);
            t.add(&d, true, 0);
        }
        t.add(p, false, 100);
    }
    Plan::new(pack(&t, n).unwrap(), "fp".into(), "walk", "t".into())
}

/// Every path, planned or made after the plan, is kept by exactly one
/// shard (split folders: by each shard with a part in or below them).
#[test]
fn every_path_belongs_to_exactly_one_shard() {
    let files = [
        "top", "big/x/1", "big/x/2", "big/y/1", "big/y/2", "big/f", "s/1", "t/1",
    ];
    let plan = plan_of(&files, 3);
    let scopes: Vec<PlanScope> = (0..3).map(|k| PlanScope::new(&plan, k)).collect();
    let owners = |rel: &str, dir: bool| -> Vec<usize> {
        // A walk asks for each parent first, and enters only kept folders.
        (0..3)
            .filter(|&k| {
                let p = Path::new(rel);
                p.ancestors()
                    .skip(1)
                    .filter(|a| !a.as_os_str().is_empty())
                    .all(|a| scopes[k].keeps(a, true))
                    && scopes[k].keeps(p, dir)
            })
            .collect()
    };
    for f in files
        .iter()
        .chain(&["new-file", "big/new-file", "big/x/new", "big/z/new"])
    {
        assert_eq!(owners(f, false).len(), 1, "{f}: {:?}", owners(f, false));
    }
    for d in ["new-dir", "s", "big/x", "big/new-dir"] {
        assert_eq!(owners(d, true).len(), 1, "{d}");
    }
    assert!(!owners("big", true).is_empty());
    // A changed plan changes every shard's filter fingerprint.
    let other = plan_of(&files, 2);
    assert_ne!(
        PlanScope::new(&plan, 0).fingerprint(),
        PlanScope::new(&other, 0).fingerprint()
    );
}

#[test]
fn shard_numbers_from_the_flag_or_the_schedulers() {
    let none = |_: &str| None;
    assert_eq!(select("2", 4, none), Ok(2));
    assert!(select("4", 4, none).unwrap_err().contains("shards 0 to 3"));
    assert!(select("x", 4, none).is_err());
    assert!(
        select("auto", 4, none)
            .unwrap_err()
            .contains("SLURM_ARRAY_TASK_ID")
    );
    let k8s = |v: &str| (v == "JOB_COMPLETION_INDEX").then(|| "3".to_string());
    assert_eq!(select("auto", 4, k8s), Ok(3));
    let both = |v: &str| match v {
        "SLURM_ARRAY_TASK_ID" => Some("1".to_string()),
        "OMPI_COMM_WORLD_RANK" => Some("0".to_string()),
        _ => None,
    };
    assert_eq!(select("auto", 4, both), Ok(1));
    let far = |v: &str| (v == "OMPI_COMM_WORLD_RANK").then(|| "9".to_string());
    assert_eq!(
        select("auto", 4, far),
        Err("OMPI_COMM_WORLD_RANK=9: the plan has shards 0 to 3 only".into())
    );
}

#[test]
fn shard_files_sit_beside_the_jobs() {
    assert_eq!(shard_file("/j/job.db".into(), 2), "/j/job.shard-2.db");
    assert_eq!(shard_file("/j/audit".into(), 0), "/j/audit.shard-0");
}
