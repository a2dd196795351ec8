//! The behaviour every [`Store`] implementation must have, as one suite both the
//! embedded store's tests and the etcd store's tests (against a real cluster) run.
//! Indexes are compared relative to each other: etcd's revisions do not start at 1.

// A test suite: a panic is how it reports a failed check.
#![allow(clippy::unwrap_used)]

use crate::{Cas, Op, Store};
use std::time::Duration;

fn put(table: &str, key: &str, value: &str, cas: Cas) -> Op {
    Op::put(table, key, value.as_bytes().to_vec(), cas)
}

/// Runs every check; panics with the name of the first that fails.
pub async fn run_all(store: &dyn Store) {
    writes_get_increasing_indexes_and_keep_create_index(store).await;
    a_write_that_changes_nothing_does_not_bump_the_index(store).await;
    check_and_set_is_all_or_nothing(store).await;
    an_unchanged_guard_refuses_a_stale_write(store).await;
    list_is_scoped_to_the_table_and_ordered(store).await;
    watchers_are_woken_by_writes(store).await;
    deletes_bump_the_table_index(store).await;
    changes_since_names_what_changed(store).await;
    a_batch_naming_a_key_twice_keeps_the_last_op(store).await;
    a_dump_holds_every_table_at_one_index(store).await;
}

async fn a_dump_holds_every_table_at_one_index(s: &dyn Store) {
    s.apply(&[
        put("d1", "a/b", "1", Cas::Any),
        put("d2", "x", "2", Cas::Any),
    ])
    .await
    .unwrap();
    let last = s.apply(&[put("d1", "c", "3", Cas::Any)]).await.unwrap();
    let dump = s.dump().await.unwrap();
    assert_eq!(dump.index, s.index().await.unwrap());
    assert!(dump.index >= last.index);
    let d1 = &dump.tables["d1"];
    assert_eq!(d1.index, last.index);
    let keys: Vec<&str> = d1.records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        ["a/b", "c"],
        "keys whole (a '/' in a key too), ordered"
    );
    assert_eq!(d1.records[1].value, b"3");
    assert_eq!(d1.records[1].modify_index, last.index);
    assert_eq!(dump.tables["d2"].records[0].value, b"2");
    // Every table a list shows is in the dump, with the same records.
    for (name, table) in &dump.tables {
        assert_eq!(s.list(name).await.unwrap(), table.records, "{name}");
        assert_eq!(s.table_index(name).await.unwrap(), table.index, "{name}");
    }
}

async fn changes_since_names_what_changed(s: &dyn Store) {
    let a = s.apply(&[put("t9", "a", "1", Cas::Any)]).await.unwrap();
    s.apply(&[put("t9", "b", "1", Cas::Any)]).await.unwrap();
    let c = s.apply(&[put("t9", "a", "2", Cas::Any)]).await.unwrap();
    // A store that can't tell (None) is allowed: the caller reads the whole table.
    if let Some(ch) = s.changes_since("t9", a.index).await.unwrap() {
        assert_eq!(ch.index, c.index);
        assert_eq!(ch.count, 2);
        let keys: Vec<&str> = ch.changed.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"], "changed after the index, ordered by key");
        assert_eq!(ch.changed[0].value, b"2");
        s.apply(&[Op::delete("t9", "b", Cas::Any)]).await.unwrap();
        let after = s.changes_since("t9", c.index).await.unwrap().unwrap();
        assert_eq!(
            (after.count, after.changed.len()),
            (1, 0),
            "a delete shows in the count"
        );
    }
}

async fn writes_get_increasing_indexes_and_keep_create_index(s: &dyn Store) {
    let a = s.apply(&[put("t1", "a", "1", Cas::Any)]).await.unwrap();
    assert!(a.ok && a.changed, "first write applies");
    let b = s.apply(&[put("t1", "a", "2", Cas::Any)]).await.unwrap();
    assert!(
        b.index > a.index,
        "indexes grow: {} then {}",
        a.index,
        b.index
    );
    let r = s.get("t1", "a").await.unwrap().unwrap();
    assert_eq!(
        (r.create_index, r.modify_index, r.value.as_slice()),
        (a.index, b.index, b"2".as_slice())
    );
    assert_eq!(s.table_index("t1").await.unwrap(), b.index);
    assert_eq!(s.table_index("never-written").await.unwrap(), 0);
    assert_eq!(
        s.table_indexes(&["t1", "never-written", "t1"])
            .await
            .unwrap(),
        [b.index, 0, b.index],
        "table_indexes answers each table in the order asked"
    );
    assert!(s.index().await.unwrap() >= b.index);
    assert!(s.get("t1", "missing").await.unwrap().is_none());
}

async fn a_write_that_changes_nothing_does_not_bump_the_index(s: &dyn Store) {
    let first = s.apply(&[put("t2", "a", "1", Cas::Any)]).await.unwrap();
    let again = s.apply(&[put("t2", "a", "1", Cas::Any)]).await.unwrap();
    assert!(again.ok && !again.changed, "same bytes: no change");
    assert_eq!(s.table_index("t2").await.unwrap(), first.index);
    let del = s
        .apply(&[Op::delete("t2", "missing", Cas::Any)])
        .await
        .unwrap();
    assert!(del.ok && !del.changed, "deleting nothing: no change");
    assert_eq!(s.table_index("t2").await.unwrap(), first.index);
}

async fn check_and_set_is_all_or_nothing(s: &dyn Store) {
    let created = s.apply(&[put("t3", "a", "1", Cas::Absent)]).await.unwrap();
    assert!(created.ok);
    let again = s.apply(&[put("t3", "a", "2", Cas::Absent)]).await.unwrap();
    assert!(!again.ok && !again.stale, "cas=0 on an existing key fails");
    let wrong = s
        .apply(&[put("t3", "a", "2", Cas::ModifyIndex(created.index + 1000))])
        .await
        .unwrap();
    assert!(!wrong.ok);
    let r = s
        .apply(&[
            put("t3", "b", "x", Cas::Any),
            put("t3", "a", "3", Cas::ModifyIndex(created.index + 1000)),
        ])
        .await
        .unwrap();
    assert!(!r.ok);
    assert!(
        s.get("t3", "b").await.unwrap().is_none(),
        "nothing written when a condition fails"
    );
    let right = s
        .apply(&[put("t3", "a", "3", Cas::ModifyIndex(created.index))])
        .await
        .unwrap();
    assert!(right.ok && right.changed);
    let missing = s
        .apply(&[Op::delete("t3", "nope", Cas::ModifyIndex(created.index))])
        .await
        .unwrap();
    assert!(!missing.ok, "cas=N on a missing key fails");
}

async fn an_unchanged_guard_refuses_a_stale_write(s: &dyn Store) {
    let w = s.apply(&[put("t4", "a", "1", Cas::Any)]).await.unwrap();
    let read_at = s.table_index("t4").await.unwrap();
    assert_eq!(read_at, w.index);
    // Someone else changes the table after our check read it.
    s.apply(&[put("t4", "b", "1", Cas::Any)]).await.unwrap();
    let stale = s
        .apply(&[put("t5", "x", "1", Cas::Any), Op::unchanged("t4", read_at)])
        .await
        .unwrap();
    assert!(!stale.ok && stale.stale, "guard fails");
    assert!(s.get("t5", "x").await.unwrap().is_none());
    let now = s.table_index("t4").await.unwrap();
    let fresh = s
        .apply(&[put("t5", "x", "1", Cas::Any), Op::unchanged("t4", now)])
        .await
        .unwrap();
    assert!(fresh.ok && !fresh.stale);
    let never = s
        .apply(&[put("t5", "y", "1", Cas::Any), Op::unchanged("t-empty", 0)])
        .await
        .unwrap();
    assert!(never.ok, "a never-written table is at index 0");
    // The narrow guard: one record's ModifyIndex (0 = absent).
    let a = s.get("t4", "a").await.unwrap().unwrap();
    let held = s
        .apply(&[
            put("t5", "z", "1", Cas::Any),
            Op::unchanged_key("t4", "a", a.modify_index),
            Op::unchanged_key("t4", "missing", 0),
        ])
        .await
        .unwrap();
    assert!(held.ok, "records unchanged: the write goes through");
    s.apply(&[put("t4", "a", "2", Cas::Any)]).await.unwrap();
    let moved = s
        .apply(&[
            put("t5", "z", "2", Cas::Any),
            Op::unchanged_key("t4", "a", a.modify_index),
        ])
        .await
        .unwrap();
    assert!(!moved.ok && moved.stale, "the record moved: stale");
    let appeared = s
        .apply(&[
            put("t5", "z", "2", Cas::Any),
            Op::unchanged_key("t4", "b", 0),
        ])
        .await
        .unwrap();
    assert!(
        !appeared.ok && appeared.stale,
        "an absent record appeared: stale"
    );
}

async fn list_is_scoped_to_the_table_and_ordered(s: &dyn Store) {
    s.apply(&[
        put("t6", "b/2", "1", Cas::Any),
        put("t6", "a", "2", Cas::Any),
        put("t6x", "c", "3", Cas::Any),
        put("t", "d", "4", Cas::Any),
    ])
    .await
    .unwrap();
    let keys: Vec<String> = s
        .list("t6")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, ["a", "b/2"]);
    assert_eq!(s.get("t6", "b/2").await.unwrap().unwrap().value, b"1");
}

async fn watchers_are_woken_by_writes(s: &dyn Store) {
    let mut rx = s.subscribe();
    rx.borrow_and_update();
    let w = s.apply(&[put("t7", "a", "1", Cas::Any)]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while *rx.borrow_and_update() < w.index {
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("a watcher sees the write within 10 s");
}

async fn deletes_bump_the_table_index(s: &dyn Store) {
    s.apply(&[put("t8", "a", "1", Cas::Any)]).await.unwrap();
    let d = s.apply(&[Op::delete("t8", "a", Cas::Any)]).await.unwrap();
    assert!(d.ok && d.changed);
    assert_eq!(s.table_index("t8").await.unwrap(), d.index);
    assert!(s.list("t8").await.unwrap().is_empty());
}

async fn a_batch_naming_a_key_twice_keeps_the_last_op(s: &dyn Store) {
    let w = s
        .apply(&[
            put("t10", "a", "1", Cas::Any),
            put("t10", "a", "2", Cas::Any),
        ])
        .await
        .unwrap();
    assert!(w.ok && w.changed);
    assert_eq!(s.get("t10", "a").await.unwrap().unwrap().value, b"2");
    let d = s
        .apply(&[
            put("t10", "a", "3", Cas::Any),
            Op::delete("t10", "a", Cas::Any),
        ])
        .await
        .unwrap();
    assert!(d.ok && d.changed);
    assert!(s.get("t10", "a").await.unwrap().is_none());
}
