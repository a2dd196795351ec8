//! What a batch of [`Op`]s does, decided once for every store: the check-and-set
//! conditions and guards, which writes change something (a put of the same bytes and
//! a delete of an absent key do not), and which tables they touch. The embedded
//! store plans inside its write transaction; the etcd store plans on the keys it read
//! at one revision and commits the plan only while those keys are unchanged.
//!
//! Worked example, a store holding `t/a = "1"` (ModifyIndex 5) at table index 5:
//!
//! | batch | plan |
//! |---|---|
//! | `Put t/a "1"` | no writes: same bytes (the index does not move) |
//! | `Put t/a "2" cas=ModifyIndex(5)` | put `t/a` (CreateIndex 5 kept); touches `t` |
//! | `Put t/a "2" cas=ModifyIndex(4)` | refused, not stale: a condition failed |
//! | `Unchanged t 4`, `Put u/b "x"` | refused, stale: what the caller read moved |
//! | `Delete t/zz` | no writes: nothing to delete |
//! | `Put t/a "2"`, `Put t/a "3"` | one put of `"3"`: the last op on a key wins |
//!
//! Conditions are all checked on the state before the batch: all or nothing.

use crate::{Cas, Op, StoreError};
use std::borrow::Cow;

/// A stored record as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing<'a> {
    pub value: Cow<'a, [u8]>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The state a batch is planned on (one point in time).
pub trait View {
    /// The record `key` of `table`, if it exists.
    fn record(&self, table: &str, key: &str) -> Result<Option<Existing<'_>>, StoreError>;
    /// The last index that changed `table` (0 if never).
    fn table_index(&self, table: &str) -> Result<u64, StoreError>;
}

/// One write of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write<'o> {
    Put {
        table: &'o str,
        key: &'o str,
        value: &'o [u8],
        /// The CreateIndex to keep when the record exists (`None`: a new record, whose
        /// CreateIndex is the write's index).
        create_index: Option<u64>,
    },
    Delete {
        table: &'o str,
        key: &'o str,
    },
}

impl<'o> Write<'o> {
    fn target(&self) -> (&'o str, &'o str) {
        match self {
            Write::Put { table, key, .. } | Write::Delete { table, key } => (*table, *key),
        }
    }
}

/// The writes of a batch that change something, and the tables they touch (each
/// once, in first-touched order). No writes: the batch changes nothing and the index
/// does not move.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan<'o> {
    pub writes: Vec<Write<'o>>,
    pub touched: Vec<&'o str>,
}

/// Why a batch is refused (nothing is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A check-and-set condition ([`Cas`]) failed.
    Condition,
    /// A guard ([`Op::Unchanged`], [`Op::UnchangedKey`]) failed: what the caller's
    /// check read has changed; re-read and retry.
    Stale,
}

/// Plans `ops` on `view`: the writes to make, or why none may be made.
pub fn plan<'o>(ops: &'o [Op], view: &impl View) -> Result<Result<Plan<'o>, Refused>, StoreError> {
    for op in ops {
        let refused = match op {
            Op::Put {
                table, key, cas, ..
            }
            | Op::Delete { table, key, cas } => {
                let holds = match cas {
                    Cas::Any => true,
                    Cas::Absent => view.record(table, key)?.is_none(),
                    Cas::ModifyIndex(i) => view
                        .record(table, key)?
                        .is_some_and(|r| r.modify_index == *i),
                };
                (!holds).then_some(Refused::Condition)
            }
            Op::Unchanged { table, index } => {
                (view.table_index(table)? != *index).then_some(Refused::Stale)
            }
            Op::UnchangedKey { table, key, index } => {
                let now = view.record(table, key)?.map_or(0, |r| r.modify_index);
                (now != *index).then_some(Refused::Stale)
            }
        };
        if let Some(why) = refused {
            return Ok(Err(why));
        }
    }
    let mut plan = Plan::default();
    for (at, op) in ops.iter().enumerate() {
        let write = match op {
            Op::Put {
                table, key, value, ..
            } => match view.record(table, key)? {
                Some(r) if r.value.as_ref() == value.as_slice() => None,
                existing => Some(Write::Put {
                    table,
                    key,
                    value,
                    create_index: existing.map(|r| r.create_index),
                }),
            },
            Op::Delete { table, key, .. } => view
                .record(table, key)?
                .is_some()
                .then_some(Write::Delete { table, key }),
            Op::Unchanged { .. } | Op::UnchangedKey { .. } => None,
        };
        let Some(write) = write else { continue };
        // The last op on a key wins (etcd refuses a transaction naming a key twice).
        let target = write.target();
        let later = ops[at + 1..].iter().any(|o| match o {
            Op::Put { table, key, .. } | Op::Delete { table, key, .. } => {
                (table.as_str(), key.as_str()) == target
            }
            Op::Unchanged { .. } | Op::UnchangedKey { .. } => false,
        });
        if later {
            continue;
        }
        if !plan.touched.contains(&target.0) {
            plan.touched.push(target.0);
        }
        plan.writes.push(write);
    }
    Ok(Ok(plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A view over a map: `(table, key) -> (value, create, modify)`.
    struct Map {
        records: BTreeMap<(&'static str, &'static str), (&'static str, u64, u64)>,
        tables: BTreeMap<&'static str, u64>,
    }

    impl View for Map {
        fn record(&self, table: &str, key: &str) -> Result<Option<Existing<'_>>, StoreError> {
            Ok(self
                .records
                .iter()
                .find(|((t, k), _)| *t == table && *k == key)
                .map(|(_, (v, c, m))| Existing {
                    value: Cow::Borrowed(v.as_bytes()),
                    create_index: *c,
                    modify_index: *m,
                }))
        }
        fn table_index(&self, table: &str) -> Result<u64, StoreError> {
            Ok(self.tables.get(table).copied().unwrap_or(0))
        }
    }

    /// The worked example's store: `t/a = "1"` at 5 (created at 3).
    fn example() -> Map {
        Map {
            records: BTreeMap::from([(("t", "a"), ("1", 3, 5))]),
            tables: BTreeMap::from([("t", 5)]),
        }
    }

    fn put(key: &str, value: &str, cas: Cas) -> Op {
        Op::put("t", key, value.as_bytes().to_vec(), cas)
    }

    #[test]
    fn the_worked_example() {
        let v = example();
        let planned = |ops: &[Op]| -> Result<Vec<String>, Refused> {
            let p = plan(ops, &v).unwrap()?;
            Ok(p.writes
                .iter()
                .map(|w| match w {
                    Write::Put {
                        table,
                        key,
                        value,
                        create_index,
                    } => format!(
                        "put {table}/{key}={} create={create_index:?}",
                        String::from_utf8_lossy(value)
                    ),
                    Write::Delete { table, key } => format!("delete {table}/{key}"),
                })
                .collect())
        };
        let none: Vec<String> = Vec::new();
        assert_eq!(
            planned(&[put("a", "1", Cas::Any)]),
            Ok(none.clone()),
            "same bytes"
        );
        assert_eq!(
            planned(&[put("a", "2", Cas::ModifyIndex(5))]),
            Ok(vec!["put t/a=2 create=Some(3)".to_string()])
        );
        assert_eq!(
            planned(&[put("a", "2", Cas::ModifyIndex(4))]),
            Err(Refused::Condition)
        );
        assert_eq!(
            planned(&[
                Op::unchanged("t", 4),
                Op::put("u", "b", b"x".to_vec(), Cas::Any)
            ]),
            Err(Refused::Stale)
        );
        assert_eq!(
            planned(&[Op::delete("t", "zz", Cas::Any)]),
            Ok(none),
            "nothing to delete"
        );
        assert_eq!(
            planned(&[put("a", "2", Cas::Any), put("a", "3", Cas::Any)]),
            Ok(vec!["put t/a=3 create=Some(3)".to_string()]),
            "the last op on a key wins"
        );
    }

    #[test]
    fn conditions_are_checked_before_any_write_and_on_the_state_before_the_batch() {
        let v = example();
        // The put would create b, but the condition on b reads the state before it.
        let ops = [put("b", "1", Cas::Any), put("b", "2", Cas::ModifyIndex(6))];
        assert_eq!(plan(&ops, &v).unwrap(), Err(Refused::Condition));
        assert_eq!(
            plan(
                &[put("b", "1", Cas::Absent), put("a", "1", Cas::Absent)],
                &v
            )
            .unwrap(),
            Err(Refused::Condition),
            "all or nothing"
        );
        assert_eq!(
            plan(
                &[Op::unchanged_key("t", "b", 0), put("b", "1", Cas::Absent)],
                &v
            )
            .unwrap()
            .map(|p| p.touched),
            Ok(vec!["t"]),
            "an absent key's guard is 0"
        );
        assert_eq!(
            plan(&[Op::unchanged_key("t", "a", 4)], &v).unwrap(),
            Err(Refused::Stale)
        );
    }

    #[test]
    fn touched_tables_are_listed_once_in_order() {
        let v = example();
        let ops = [
            Op::put("u", "x", b"1".to_vec(), Cas::Any),
            put("b", "1", Cas::Any),
            Op::put("u", "y", b"1".to_vec(), Cas::Any),
            Op::delete("t", "a", Cas::ModifyIndex(5)),
        ];
        let p = plan(&ops, &v).unwrap().unwrap();
        assert_eq!(p.touched, ["u", "t"]);
        assert_eq!(p.writes.len(), 4);
        assert_eq!(
            p.writes[3],
            Write::Delete {
                table: "t",
                key: "a"
            }
        );
    }
}
