//! The apply answers the callers of a batch proposed on this node itself:
//! only once the batch is written and its events are out, with the batch's
//! own verdicts, once; an equal batch from elsewhere (decoded from the log or
//! a peer) is left to raft's answer.

mod common;

use std::sync::{Arc, Mutex};

use common::{create, entry, id};
use idreg_core::Kek;
use idreg_store::{BatchOutcome, Store};
use openraft::storage::RaftStateMachine;
use openraft::EntryPayload;

#[tokio::test]
async fn the_apply_answers_a_registered_batch_after_its_write_and_events() {
    let kek = Kek::from_bytes(&[5; 32]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &kek).unwrap();
    let mut sm = store.state_machine().unwrap();
    let waiting = store.waiting_callers();

    let proposed = entry(1, vec![create("a"), create("b"), create("a")]);
    let EntryPayload::Normal(batch) = &proposed.payload else {
        unreachable!()
    };
    // What the callers hear, and what the store and the event stream held
    // at that moment.
    let heard: Arc<Mutex<Option<(BatchOutcome, bool, usize)>>> = Arc::default();
    let (reader, mut events) = (store.reader(), store.subscribe());
    let h = heard.clone();
    let _registered = waiting.register(
        batch,
        Box::new(move |outcome| {
            let written = reader.get("a").unwrap().is_some() && reader.get("b").unwrap().is_some();
            let mut events_out = 0;
            while events.try_recv().is_ok() {
                events_out += 1;
            }
            *h.lock().unwrap() = Some((outcome, written, events_out));
        }),
    );

    let returned = sm.apply([proposed.clone()]).await.unwrap();
    let (outcome, written, events_out) = heard.lock().unwrap().take().expect("answered");
    assert!(written, "the callers hear only once the batch is written");
    assert_eq!(events_out, 2, "and once its events are out");
    assert_eq!(outcome.0.len(), 3);
    assert!(matches!(&outcome.0[0], Ok(Some(d)) if d.id == id("a")));
    assert!(matches!(&outcome.0[1], Ok(Some(d)) if d.id == id("b")));
    assert!(outcome.0[2].is_err(), "a is taken");
    assert_eq!(
        returned,
        vec![BatchOutcome::default()],
        "raft's copy is empty"
    );
    assert!(waiting.is_empty(), "answered once");

    // An equal batch in another allocation (read back, or from a peer) goes
    // unanswered here, and raft gets its verdicts.
    let again = entry(2, vec![create("c")]);
    let EntryPayload::Normal(batch) = &again.payload else {
        unreachable!()
    };
    let h = heard.clone();
    let _registered = waiting.register(
        batch,
        Box::new(move |o| *h.lock().unwrap() = Some((o, false, 0))),
    );
    let decoded = entry(2, vec![create("c")]);
    let returned = sm.apply([decoded]).await.unwrap();
    assert!(heard.lock().unwrap().is_none());
    assert!(matches!(&returned[0].0[0], Ok(Some(d)) if d.id == id("c")));
}
