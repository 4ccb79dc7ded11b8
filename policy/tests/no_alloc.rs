//! Checks that `decide` for publish and receive does not allocate, with a
//! counting global allocator (this file is its own test binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use warden_policy::{
    AclEngine, Action, ActionKind, ActionSet, Effect, PolicyEngine, PolicyVersion, Principal, QoS,
    RuleId, RuleSet, RuleSpec, Subject,
};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn publish_and_receive_decisions_do_not_allocate() {
    let alice = Principal {
        username: Some("alice".into()),
        client_id: "alice-1".into(),
        ..Principal::default()
    };
    let rules: Vec<_> = ["a/${username}/#", "+/x/+", "#", "$SYS/#"]
        .iter()
        .enumerate()
        .map(|(i, pattern)| {
            RuleSpec {
                effect: if i == 1 { Effect::Deny } else { Effect::Allow },
                subject: Subject::Everyone,
                actions: ActionSet::of(&[ActionKind::Publish, ActionKind::Receive]),
                pattern: (*pattern).to_owned(),
                max_qos: (i != 1).then_some(QoS::AtLeastOnce),
                retain: Some(false),
            }
            .with_id(RuleId(i as u64))
        })
        .collect();
    let policy = AclEngine::default()
        .compile(&alice, &RuleSet(rules), PolicyVersion(1))
        .expect("compile");
    let actions = [
        Action::Publish {
            topic: "a/alice/t",
            qos: QoS::ExactlyOnce,
            retain: true,
        },
        Action::Publish {
            topic: "q/x/y",
            qos: QoS::AtMostOnce,
            retain: false,
        },
        Action::Receive {
            topic: "$SYS/load",
            qos: QoS::ExactlyOnce,
            retain: false,
        },
        Action::Receive {
            topic: "bad/+",
            qos: QoS::AtMostOnce,
            retain: false,
        },
    ];
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut allowed = 0;
    for action in &actions {
        allowed += usize::from(policy.decide(action).is_allow());
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(after - before, 0, "decide allocated");
    assert_eq!(allowed, 1);
}
