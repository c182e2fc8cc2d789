//! A watcher for folders that must only ever show whole, right files: every name in a
//! folder must be one expected, with exactly the expected bytes (absent is fine). Used by
//! the chaos test (`tests/tests/chaos.rs`) on every node's `DIR` while a nemesis works.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::sha256_hex;

/// What the file of a name must be.
#[derive(Debug, Clone)]
pub struct Want {
    pub size: u64,
    pub sha: String,
}

/// Every name ever handed to an insert, registered before the insert is asked for.
pub type Expected = Arc<Mutex<BTreeMap<String, Want>>>;

/// A file's identity on disk: a verified file is hashed again only when this changes.
pub type Stamp = (u64, u64, i64, i64, i64, i64);

/// Looks at one folder: every file in it must be an expected name with exactly the
/// expected bytes. Returns the names present and verified, and what was wrong.
/// Verified files are remembered by [`Stamp`] (inode, size, mtime, ctime) once their
/// ctime is over a second old, so a later write to them, which moves the ctime, is
/// hashed again.
pub fn check_dir(
    label: &str,
    dir: &Path,
    expected: &Expected,
    cache: &mut HashMap<PathBuf, Stamp>,
) -> (BTreeSet<String>, Vec<String>) {
    let (mut present, mut wrong) = (BTreeSet::new(), Vec::new());
    // The listing comes first: a name in it was registered before it was published.
    let names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(e) => return (present, vec![format!("{label}: cannot list {}: {e}", dir.display())]),
    };
    let expected = expected.lock().unwrap().clone();
    for name in names.into_iter().filter(|n| n != ".torronto") {
        let path = dir.join(&name);
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        let Some(want) = expected.get(&name) else {
            wrong.push(format!("{label}: unexpected {} ({} bytes)", path.display(), meta.len()));
            continue;
        };
        if !meta.is_file() || meta.len() != want.size {
            wrong.push(format!("{label}: {name} is {} bytes, not {} (or not a file)", meta.len(), want.size));
            continue;
        }
        let stamp = (meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec());
        if cache.get(&path) == Some(&stamp) {
            present.insert(name);
            continue;
        }
        let Ok(bytes) = fs::read(&path) else { continue };
        if sha256_hex(&bytes) != want.sha {
            wrong.push(format!("{label}: {name} has the right size but wrong bytes"));
            continue;
        }
        let settled = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .is_ok_and(|now| now.as_secs() as i64 > meta.ctime() + 1);
        if settled {
            cache.insert(path, stamp);
        }
        present.insert(name);
    }
    (present, wrong)
}

/// A thread checking folders (one per node), again and again until stopped. What it finds
/// wrong it keeps for [`Watcher::wrong`]; it never panics itself.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    wrong: Arc<Mutex<Vec<String>>>,
    handle: JoinHandle<(u64, u64)>,
}

impl Watcher {
    /// Starts looking at `dirs` (label, folder) every `every`.
    pub fn start(every: Duration, dirs: Vec<(String, PathBuf)>, expected: Expected) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let wrong = Arc::new(Mutex::new(Vec::new()));
        let (stop2, wrong2) = (stop.clone(), wrong.clone());
        let handle = std::thread::spawn(move || {
            let (mut passes, mut files) = (0u64, 0u64);
            let mut cache = HashMap::new();
            // Once a node shows a file, it must keep showing it: nothing here removes files.
            let mut seen: Vec<BTreeSet<String>> = vec![BTreeSet::new(); dirs.len()];
            while !stop2.load(Ordering::Relaxed) {
                for (i, (label, dir)) in dirs.iter().enumerate() {
                    let (present, mut bad) = check_dir(label, dir, &expected, &mut cache);
                    bad.extend(seen[i].difference(&present).map(|n| format!("{label}: {n} vanished")));
                    files += present.len() as u64;
                    seen[i].extend(present);
                    wrong2.lock().unwrap().extend(bad);
                }
                passes += 1;
                std::thread::sleep(every);
            }
            (passes, files)
        });
        Watcher { stop, wrong, handle }
    }

    /// What it has found wrong so far.
    pub fn wrong(&self) -> Vec<String> {
        self.wrong.lock().unwrap().clone()
    }

    /// Stops it; returns (passes over every folder, files checked, what was wrong).
    pub fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let wrong = self.wrong.clone();
        let (passes, files) = self.handle.join().expect("watcher thread");
        let wrong = wrong.lock().unwrap().clone();
        (passes, files, wrong)
    }
}
