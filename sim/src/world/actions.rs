//! The schedule's steps, carried out in the world; and the end of the faults.

use super::World;
use crate::schedule::{Action, Role};

impl World {
    pub fn act(&mut self, action: Action) {
        let now = self.now;
        match action {
            Action::Insert { m, file } => {
                let path = self.schedule.files[file].path();
                let x = &mut self.machines[m];
                if let Some(node) = x.node.as_mut() {
                    let id = node.insert(now, path);
                    x.inserts.insert(id, file);
                    self.drain(m);
                }
            }
            Action::Join { m } => {
                if self.machines[m].gone && self.machines[m].role != Role::Liar {
                    // A machine whose folder was deleted joins again, empty.
                    self.machines[m].gone = false;
                }
                self.machines[m].member = true;
                if !self.machines[m].running() {
                    self.start(m);
                } else if let Some(node) = self.machines[m].node.as_mut().filter(|n| !n.is_joined()) {
                    node.join(now);
                    self.drain(m);
                    self.open_browser_sessions(m);
                }
            }
            Action::Leave { m, wipe } => {
                let x = &mut self.machines[m];
                if let Some(node) = x.node.as_mut().filter(|n| n.is_joined()) {
                    x.member = false;
                    x.wipe_on_leave = wipe;
                    node.leave(now);
                    self.drain(m);
                }
            }
            Action::Remove { m, file } => {
                let name = self.schedule.files[file].name.clone();
                if let Some(node) = self.machines[m].node.as_mut() {
                    let removed = node.remove(now, &name).is_ok();
                    self.log(|| format!("m{m}: remove {name}: {}", if removed { "ok" } else { "unknown here" }));
                    if removed {
                        self.stats.removes_ok += 1;
                        self.removed.insert(file);
                    }
                    self.drain(m);
                }
            }
            Action::Request { m, file } => {
                let name = self.schedule.files[file].name.clone();
                let x = &mut self.machines[m];
                x.wanted.insert(name.clone());
                if let Some(node) = x.node.as_mut() {
                    node.request_file(now, &name);
                    self.drain(m);
                }
            }
            Action::Drop { a, b } => self.cut(|x, y| (x == a && y == b) || (x == b && y == a)),
            Action::Partition { side } => {
                self.partition = Some(side);
                self.cut(|x, y| (side >> x) & 1 != (side >> y) & 1);
            }
            Action::Heal => self.partition = None,
            Action::Delay { millis } => self.extra_delay = millis,
            Action::Crash { m } => self.crash(m),
            Action::Restart { m } => {
                if !self.machines[m].running() {
                    self.start(m);
                }
            }
            Action::DiskFull { m, full } => self.machines[m].disk.full = full,
            Action::SlowDisk { m, millis } => self.machines[m].slow = millis,
        }
    }

    /// The end of the faults: the network heals, disks recover, every machine (but
    /// those whose folder was deleted) runs and joins, and the liars are taken out
    /// (what they claimed is forgotten with them).
    pub fn heal_all(&mut self) {
        self.log(|| "HEAL ALL".into());
        self.healed = true;
        self.partition = None;
        self.extra_delay = 0;
        for m in 0..self.machines.len() {
            self.machines[m].disk.full = false;
            self.machines[m].slow = 0;
            if self.machines[m].role == Role::Liar {
                self.crash(m);
                self.machines[m].gone = true;
            } else if !self.machines[m].gone {
                // Every owner wants back in, so that whatever a disk holds is reachable.
                self.act(Action::Join { m });
            }
        }
    }
}
