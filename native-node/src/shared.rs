//! The shared folder: what the user puts in the node's folder joins the network, and
//! what the user deletes from it by accident comes back.
//!
//! Every folder beneath DIR (never `.torronto`, never through a symlink: the walk of
//! [`Folder::walk`]) is watched with inotify through the `notify` crate. A path that
//! changes is looked at again once it has stopped changing for the settle delay
//! (`--settle-ms`) and, if it was written to, once the writer has closed it (up to
//! [`WRITER_PATIENCE`]): so a file still being written is never published half-written.
//! Then:
//! - a regular file the node does not hold is adopted ([`Node::adopt`]): hashed in
//!   place and published, but only while the node is a member (it then knows what the
//!   network has, and never publishes over the network's file of that name);
//! - a path where the node held a complete file, now empty, is restored
//!   ([`Node::local_copy_gone`]).
//!
//! The node's own writes need no special case: a file it publishes (fetched, inserted,
//! a conflict copy) is one it holds, so it is neither adopted nor restored; partial
//! data lives under `.torronto/`, which is not watched. Conflict copies are never
//! adopted, not even after the node's state was lost: they are the network's files.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use rustix::fs::FileType;
use tokio::sync::mpsc;
use tokio::time::Instant;
use torronto_core::name::STATE_DIR;
use torronto_core::{Event, FileName, ImportId, Millis, Node};

use crate::beneath::{Folder, Stamp};
use crate::input::Input;
use crate::store::is_conflict_copy;

/// The default settle delay: a file unchanged this long is taken as written.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);
/// How long a file written to and never closed is waited for before it is taken
/// anyway, once unchanged (a writer may keep it open and never write again).
pub const WRITER_PATIENCE: Duration = Duration::from_secs(60);
/// How often paths that settled before the node was a member are looked at again.
const MEMBER_POLL: Duration = Duration::from_millis(500);
/// Files hashed at once: a folder of thousands found at start is taken a few at a
/// time, not with a thread each fighting over the disk.
const MAX_ADOPTING: usize = 2;

/// What the watcher saw, as the loop gets it.
#[derive(Debug)]
pub enum Change {
    /// Something happened at `path`.
    Touched { path: PathBuf, how: How },
    /// Events were lost (the kernel's queue overflowed): look at everything again.
    Rescan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// Data written: a writer has it open.
    Wrote,
    /// A writer closed it.
    Closed,
    /// Created, moved, deleted, its attributes changed.
    Other,
}

/// A path waiting to settle.
#[derive(Debug)]
struct Pending {
    changed: Instant,
    /// Written to and not closed since.
    writing: bool,
}

/// How often a folder is looked at when the kernel cannot notify us of changes.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The kernel's notifications where it gives them, else polling.
#[derive(Debug)]
enum FolderWatcher {
    Kernel(notify::RecommendedWatcher),
    Polling(notify::PollWatcher),
}

impl FolderWatcher {
    fn watch(&mut self, path: &Path) -> notify::Result<()> {
        match self {
            Self::Kernel(w) => w.watch(path, RecursiveMode::NonRecursive),
            Self::Polling(w) => w.watch(path, RecursiveMode::NonRecursive),
        }
    }
}

/// Turns what the watcher saw into the node's input.
fn handler(inputs: mpsc::Sender<Input>) -> impl notify::EventHandler {
    move |event: notify::Result<notify::Event>| {
        let changes = match event {
            Ok(event) if event.need_rescan() => vec![Change::Rescan],
            Ok(event) => {
                let how = match event.kind {
                    EventKind::Modify(ModifyKind::Data(_)) => How::Wrote,
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => How::Closed,
                    // Reads (ours, serving chunks, among them) change nothing.
                    EventKind::Access(_) => return,
                    _ => How::Other,
                };
                event.paths.into_iter().map(|path| Change::Touched { path, how }).collect()
            }
            Err(e) => {
                tracing::warn!("watching the folder: {e}; looking at all of it again");
                vec![Change::Rescan]
            }
        };
        // Waits when the loop is busy; only fails once the node has stopped.
        let _ = inputs.blocking_send(Input::Folder(changes));
    }
}

/// The watcher and the paths waiting to be looked at.
#[derive(Debug)]
pub struct SharedFolder {
    folder: Folder,
    watcher: FolderWatcher,
    settle: Duration,
    pending: HashMap<String, Pending>,
    /// Settled files waiting for the node to be a member, or for their turn.
    waiting: HashSet<String>,
    /// Adoptions under way: the path and what it was when offered.
    adopting: HashMap<ImportId, (String, Stamp)>,
    /// Paths skipped with a warning, not warned about again.
    warned: HashSet<PathBuf>,
}

impl SharedFolder {
    /// Starts watching `dir` and queues every file in it, so files already there are
    /// adopted like new ones.
    pub fn start(dir: &Path, settle: Duration, inputs: mpsc::Sender<Input>) -> anyhow::Result<Self> {
        let config = notify::Config::default().with_follow_symlinks(false);
        let watcher = match notify::RecommendedWatcher::new(handler(inputs.clone()), config) {
            Ok(watcher) => FolderWatcher::Kernel(watcher),
            // Linux allows 128 inotify instances per user by default: the 129th node on a
            // machine still shares its folder, by looking at it now and then.
            Err(e) => {
                tracing::warn!(
                    "cannot watch the folder with the kernel's notifications ({e}; on Linux, raise \
                     fs.inotify.max_user_instances); looking at it every {} s instead",
                    POLL_INTERVAL.as_secs()
                );
                FolderWatcher::Polling(notify::PollWatcher::new(
                    handler(inputs),
                    config.with_poll_interval(POLL_INTERVAL),
                )?)
            }
        };
        let mut shared = Self {
            folder: Folder::open(dir)?,
            watcher,
            settle,
            pending: HashMap::new(),
            waiting: HashSet::new(),
            adopting: HashMap::new(),
            warned: HashSet::new(),
        };
        shared.add_tree("");
        Ok(shared)
    }

    /// Watches the folder `rel` and every folder beneath it, and queues every file.
    fn add_tree(&mut self, rel: &str) {
        let walked = match self.folder.walk(rel, STATE_DIR) {
            Ok(walked) => walked,
            Err(e) => return tracing::warn!("cannot look into {}: {e}", self.folder.path().join(rel).display()),
        };
        for dir in &walked.dirs {
            let path = self.folder.path().join(dir);
            if let Err(e) = self.watcher.watch(&path) {
                tracing::warn!("cannot watch {}: {e}; files put there are not shared until restart", path.display());
            }
        }
        for path in walked.skipped {
            self.warn_once(path, "a symbolic link or a name that is not UTF-8");
        }
        for file in walked.files {
            self.touch(file, How::Other);
        }
    }

    fn warn_once(&mut self, path: PathBuf, why: &str) {
        if self.warned.len() >= 4096 {
            self.warned.clear();
        }
        if self.warned.insert(path.clone()) {
            // Quoted and escaped: the name may hold the very characters refused.
            tracing::warn!("not sharing {path:?}: {why}");
        }
    }

    fn touch(&mut self, rel: String, how: How) {
        self.waiting.remove(&rel);
        let p = self.pending.entry(rel).or_insert(Pending { changed: Instant::now(), writing: false });
        p.changed = Instant::now();
        match how {
            How::Wrote => p.writing = true,
            How::Closed => p.writing = false,
            How::Other => {}
        }
    }

    /// Takes what the watcher saw.
    pub fn changed(&mut self, node: &Node, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Rescan => self.rescan(node),
                Change::Touched { path, how } => {
                    let Ok(rel) = path.strip_prefix(self.folder.path()) else { continue };
                    let Some(rel) = rel.to_str().map(str::to_owned) else {
                        self.warn_once(path, "its name is not UTF-8");
                        continue;
                    };
                    if rel.is_empty() || rel.split('/').next() == Some(STATE_DIR) {
                        continue;
                    }
                    // A folder created or moved in: watch it, and take what is in it
                    // already (written before the watch was there).
                    if how == How::Other && self.is_dir(&rel) {
                        self.add_tree(&rel);
                    }
                    self.touch(rel, how);
                }
            }
        }
    }

    /// Looks at every file, and at where every file the node holds should be.
    fn rescan(&mut self, node: &Node) {
        self.add_tree("");
        for name in node.held_at("") {
            self.touch(name.as_str().to_owned(), How::Other);
        }
    }

    fn is_dir(&self, rel: &str) -> bool {
        let st = self.folder.stat(rel).ok().flatten();
        st.is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
    }

    /// When [`SharedFolder::settled`] should next be called, if ever.
    pub fn next_check(&self, node: &Node) -> Option<Instant> {
        let settle = |p: &Pending| p.changed + if p.writing { WRITER_PATIENCE } else { self.settle };
        let first = self.pending.values().map(settle).min();
        let poll = match self.waiting.is_empty() {
            true => None,
            false if node.is_member() && self.adopting.len() < MAX_ADOPTING => Some(Instant::now()),
            false => Some(Instant::now() + MEMBER_POLL),
        };
        first.into_iter().chain(poll).min()
    }

    /// Looks at every path that has settled: adopts new files, restores deleted ones.
    pub fn settled(&mut self, node: &mut Node, now: Millis) {
        let at = Instant::now();
        let settle = self.settle;
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| at >= p.changed + if p.writing { WRITER_PATIENCE } else { settle })
            .map(|(rel, _)| rel.clone())
            .collect();
        for rel in due {
            self.pending.remove(&rel);
            self.look_at(node, now, rel);
        }
        let room = MAX_ADOPTING.saturating_sub(self.adopting.len());
        if node.is_member() && room > 0 {
            let turn: Vec<String> = self.waiting.iter().take(room).cloned().collect();
            for rel in turn {
                self.waiting.remove(&rel);
                self.look_at(node, now, rel);
            }
        }
    }

    fn look_at(&mut self, node: &mut Node, now: Millis, rel: String) {
        let found = match self.folder.stat(&rel) {
            Ok(found) => found,
            // A symlink or a file on the way: not ours to look into.
            Err(e) => return tracing::debug!("not looking at {rel}: {e}"),
        };
        let Some(st) = found else {
            for name in node.held_at(&rel) {
                node.local_copy_gone(now, &name);
            }
            return;
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => self.offer(node, now, rel, Stamp::of(&st)),
            FileType::Symlink => self.warn_once(self.folder.path().join(&rel), "a symbolic link"),
            _ => {}
        }
    }

    /// Adopts the file at `rel` unless the node holds it already (its own copy) or it
    /// is a conflict copy.
    fn offer(&mut self, node: &mut Node, now: Millis, rel: String, stamp: Stamp) {
        if !node.held_at(&rel).is_empty() || self.adopting.values().any(|(r, _)| *r == rel) {
            return;
        }
        if is_conflict_copy(&rel) {
            return tracing::debug!("not sharing {rel}: a conflict copy holds one of the network's files");
        }
        let name = match FileName::new(&rel) {
            Ok(name) => name,
            Err(e) => return self.warn_once(self.folder.path().join(&rel), &e.to_string()),
        };
        if !node.is_member() || self.adopting.len() >= MAX_ADOPTING {
            self.waiting.insert(rel);
            return;
        }
        let id = node.adopt(now, name);
        self.adopting.insert(id, (rel, stamp));
    }

    /// Sees how an adoption ended: a file that changed since it was offered is looked
    /// at again once it settles.
    pub fn event(&mut self, event: &Event) {
        let Event::Adopted { id, .. } = event else { return };
        let Some((rel, stamp)) = self.adopting.remove(id) else { return };
        let now = self.folder.stat(&rel).ok().flatten().map(|st| Stamp::of(&st));
        if now.is_some_and(|now| now != stamp) {
            self.touch(rel, How::Other);
        }
    }
}
