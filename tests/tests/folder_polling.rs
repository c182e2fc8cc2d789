//! A node that cannot have the kernel's folder notifications (Linux gives each user 128
//! inotify instances by default, so the 129th node on a machine has none) still shares
//! what is put in its folder, by looking at it now and then. In a file of its own: while
//! this test holds every instance, no other node of the run could get one.

use std::fs;
use std::time::Duration;

use rustix::fs::inotify;
use rustix::io::Errno;
use torronto_tests::{file_status, wait_until, TestNode};

#[test]
fn a_node_without_kernel_notifications_still_shares_its_folder() {
    let mut held = Vec::new();
    loop {
        match inotify::init(inotify::CreateFlags::CLOEXEC) {
            Ok(fd) => held.push(fd),
            Err(Errno::MFILE) => break,
            Err(e) => panic!("inotify_init: {e}"),
        }
        assert!(held.len() < 1 << 20, "no limit on inotify instances: nothing to test");
    }
    let mut node = TestNode::new("polling");
    node.set_join_on_start(true);
    node.start();
    drop(held);
    assert!(node.log().contains("looking at it every"), "the node did not say it polls:\n{}", node.log());

    fs::write(node.file("dropped.txt"), "put in the folder while the node runs\n").unwrap();
    wait_until(Duration::from_secs(30), "the node shares dropped.txt", || {
        file_status(&node.query(), "dropped.txt").is_some_and(|f| f.local == 1.0)
    });
}
