//! Search: a small planner picks the narrowest source of candidates — the ids given, or the
//! index with the fewest entries for the criterion's values — walks it in id order, and checks
//! every criterion on each record. A request examines at most [`MAX_EXAMINED`] candidates and
//! then answers with what it found and a `LastEvaluatedKey`.
//!
//! Every source yields ids in ascending order and the page token is the last id examined, so
//! a walk is exactly-once by construction: a later page only looks at larger ids.
//!
//! A candidate from an index comes with what its entry says of the record (status and date,
//! [`EntryFacts`]): one the criteria rule out on those alone is examined without reading or
//! decoding the record (`SearchCriteria::rules_out`).

use super::codec;
use super::error::StoreError;
use super::index::{entry_facts, REGISTRATION_INDEXES};
use super::keys::{self, Key};
use super::page::PageScope;
use super::Store;
use crate::domain::ids::TenantId;
use crate::domain::registration::CourseRegistration;
use crate::domain::search::{EntryFacts, SearchCriteria};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Most candidates one search request examines.
pub const MAX_EXAMINED: usize = 10_000;
/// How far the planner counts the entries of each candidate index before it stops counting.
const PLAN_PROBE: usize = 2_000;

/// Where a search takes its candidates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The ids the search names, sorted.
    Ids(Vec<String>),
    /// The entries of one index for these values.
    Index {
        lookup: &'static str,
        /// One value tuple (one value per field of the index) per stream.
        values: Vec<Vec<String>>,
    },
    /// Every registration of the tenant.
    Scan,
}

/// One candidate of a search: its id, its record's bytes when the source has them, and what
/// its index entry says of the record when it comes from an index.
struct Candidate {
    id: String,
    record: Option<sled::IVec>,
    facts: Option<EntryFacts>,
}

/// Candidates in ascending id order.
type Candidates<'a> = Box<dyn Iterator<Item = Result<Candidate, StoreError>> + 'a>;

/// One page of search results.
#[derive(Debug)]
pub struct SearchPage {
    pub items: Vec<CourseRegistration>,
    pub next: Option<String>,
    pub plan: Plan,
}

/// The index-backed criteria: each index a search can walk, with the value tuples to walk
/// (one stream per tuple, merged in id order).
fn indexed_criteria(c: &SearchCriteria) -> Vec<(&'static str, Vec<Vec<String>>)> {
    let sorted = |v: Option<Vec<String>>| {
        v.map(|mut values| {
            values.sort();
            values.dedup();
            values
        })
    };
    let statuses = sorted(
        c.status
            .as_ref()
            .map(|s| s.iter().map(|s| s.as_str().to_owned()).collect()),
    );
    let courses = sorted(c.course_id.clone());
    let mut out = Vec::new();
    // Course and status together (a course's report by state): every (course, status) pair,
    // while there are few enough pairs that one stream each stays cheap. First, as the most
    // selective, so the others' counts stop early (see `plan_search`).
    if let (Some(courses), Some(statuses)) = (&courses, &statuses) {
        if courses.len() * statuses.len() <= MAX_PAIR_STREAMS {
            let pairs = courses
                .iter()
                .flat_map(|c| statuses.iter().map(move |s| vec![c.clone(), s.clone()]))
                .collect();
            out.push(("courseStatus", pairs));
        }
    }
    // The pairs' entries are a subset of both the courses' and the statuses' entries: those
    // two can never have fewer, so they are not counted at all.
    let (courses, statuses) = if out.is_empty() {
        (courses, statuses)
    } else {
        (None, None)
    };
    for (lookup, values) in [
        ("order", sorted(c.order_id.clone())),
        ("courseOffering", sorted(c.course_offering_id.clone())),
        ("course", courses),
        ("status", statuses),
    ] {
        if let Some(values) = values {
            out.push((lookup, values.into_iter().map(|v| vec![v]).collect()));
        }
    }
    out
}

/// Most (course, status) streams one search merges; past it the single-field indexes serve.
const MAX_PAIR_STREAMS: usize = 64;

impl Store {
    fn index_position(lookup: &str) -> Result<usize, StoreError> {
        REGISTRATION_INDEXES
            .iter()
            .position(|d| d.lookup == lookup)
            .ok_or_else(|| StoreError::Corrupt(format!("no index {lookup}")))
    }

    /// Chooses the source with the fewest candidates.
    pub fn plan_search(&self, tenant: &TenantId, c: &SearchCriteria) -> Result<Plan, StoreError> {
        if let Some(ids) = &c.ids {
            let mut ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            ids.sort();
            ids.dedup();
            return Ok(Plan::Ids(ids));
        }
        let mut candidates = indexed_criteria(c);
        if candidates.len() == 1 {
            // Counting only serves to choose: one candidate is the plan (a search by course
            // and status counted up to 2,000 entries for nothing).
            let (lookup, values) = candidates.remove(0);
            return Ok(Plan::Index { lookup, values });
        }
        let mut best: Option<(usize, &'static str, Vec<Vec<String>>)> = None;
        for (lookup, values) in candidates {
            let handles = self.handles()?;
            let tree = handles.index_tree(Self::index_position(lookup)?);
            // Counting stops where this index could no longer win: a search by course and
            // status once counted 2,000 status entries to learn that 25 pairs were fewer.
            let probe = best
                .as_ref()
                .map_or(PLAN_PROBE, |(n, _, _)| (*n).min(PLAN_PROBE));
            let mut count = 0;
            for value in &values {
                let prefix = keys::index_prefix(tenant.as_str(), value.iter().map(String::as_str));
                count += tree
                    .scan_prefix(prefix.as_bytes())
                    .keys()
                    .take(probe - count.min(probe))
                    .count();
                if count >= probe {
                    break;
                }
            }
            if best.as_ref().is_none_or(|(n, _, _)| count < *n) {
                best = Some((count, lookup, values));
            }
        }
        Ok(match best {
            Some((_, lookup, values)) => Plan::Index { lookup, values },
            None => Plan::Scan,
        })
    }

    pub fn search_registrations(
        &self,
        tenant: &TenantId,
        criteria: &SearchCriteria,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SearchPage, StoreError> {
        let t = tenant.as_str();
        let scope = PageScope::query(t, "search", criteria.canonical().as_bytes());
        let position = after
            .map(|token| self.tokens.open(&scope, token))
            .transpose()?;
        let plan = self.plan_search(tenant, criteria)?;
        let candidates = self.candidates(tenant, &plan, position.as_deref())?;
        let mut items = Vec::new();
        let mut last_examined: Option<String> = None;
        for (examined, candidate) in candidates.enumerate() {
            let Candidate { id, record, facts } = candidate?;
            if items.len() == limit || examined == MAX_EXAMINED {
                let next = last_examined.map(|id| self.tokens.seal(&scope, &id));
                return Ok(SearchPage { items, next, plan });
            }
            // Its entry proves it cannot match: examined (it counts, and a later page starts
            // after it) without reading the record.
            if facts.is_some_and(|facts| criteria.rules_out(&facts)) {
                last_examined = Some(id);
                continue;
            }
            let record: Option<CourseRegistration> = match record {
                Some(bytes) => Some(codec::decode(&bytes)?),
                // The entry and the record are not read as one snapshot: a record deleted
                // meanwhile is skipped.
                None => self
                    .handles()?
                    .tree(super::tx::TreeId::Registrations)
                    .get(keys::registration(t, &id))?
                    .map(|b| codec::decode(&b))
                    .transpose()?,
            };
            if let Some(record) = record.filter(|r| criteria.matches(r)) {
                items.push(record);
            }
            last_examined = Some(id);
        }
        Ok(SearchPage {
            items,
            next: None,
            plan,
        })
    }

    /// The candidates of a plan after `position`, in ascending id order: (id, record bytes if
    /// the source already has them).
    fn candidates<'a>(
        &'a self,
        tenant: &TenantId,
        plan: &Plan,
        position: Option<&str>,
    ) -> Result<Candidates<'a>, StoreError> {
        let t = tenant.as_str().to_owned();
        Ok(match plan {
            Plan::Ids(ids) => {
                let ids: Vec<String> = ids
                    .iter()
                    .filter(|id| position.is_none_or(|p| id.as_str() > p))
                    .cloned()
                    .collect();
                Box::new(ids.into_iter().map(|id| {
                    Ok(Candidate {
                        id,
                        record: None,
                        facts: None,
                    })
                }))
            }
            Plan::Scan => {
                let prefix = keys::registrations_of(&t);
                let start = match position {
                    Some(p) => keys::resume_after(&prefix, p),
                    None => prefix.as_bytes().to_vec(),
                };
                let prefix_bytes = prefix.into_bytes();
                Box::new(
                    self.handles()?
                        .tree(super::tx::TreeId::Registrations)
                        .range_owned(start..)
                        .take_while(move |e| {
                            e.as_ref()
                                .map_or(true, |(k, _)| k.starts_with(&prefix_bytes))
                        })
                        .map(|e| {
                            let (key, value) = e?;
                            Ok(Candidate {
                                id: keys::registration_id(&key)?,
                                record: Some(value),
                                facts: None,
                            })
                        }),
                )
            }
            Plan::Index { lookup, values } => {
                let handles = self.handles()?;
                let tree = handles.index_tree(Self::index_position(lookup)?);
                let streams: Vec<IndexStream> = values
                    .iter()
                    .map(|value| {
                        let prefix: Key = keys::index_prefix(&t, value.iter().map(String::as_str));
                        let start = match position {
                            Some(p) => keys::resume_after(&prefix, p),
                            None => prefix.as_bytes().to_vec(),
                        };
                        IndexStream {
                            iter: tree.range(start..),
                            prefix: prefix.into_bytes(),
                            value_count: value.len(),
                        }
                    })
                    .collect();
                Box::new(MergedIds::new(streams)?)
            }
        })
    }
}

/// The entries of one index prefix in ascending id order: each id with what its entry says.
struct IndexStream {
    iter: sled::Iter,
    prefix: Vec<u8>,
    /// How many value components precede the id in each key.
    value_count: usize,
}

impl IndexStream {
    fn next_entry(&mut self) -> Result<Option<(String, Option<EntryFacts>)>, StoreError> {
        match self.iter.next() {
            Some(entry) => {
                let (key, value) = entry?;
                if !key.starts_with(&self.prefix) {
                    return Ok(None);
                }
                let id = keys::index_entry_id(&key, self.value_count)?;
                // Bytes no build wrote say nothing: the record is read, as without facts.
                Ok(Some((id, entry_facts(&value))))
            }
            None => Ok(None),
        }
    }
}

/// A k-way merge of index streams into one ascending candidate stream. A record has one value
/// per field, so it appears in at most one stream; equal ids are still merged defensively.
struct MergedIds {
    streams: Vec<IndexStream>,
    /// Each stream's next id, smallest first.
    heads: BinaryHeap<Reverse<(String, usize)>>,
    /// The facts of each stream's head entry.
    head_facts: Vec<Option<EntryFacts>>,
    last: Option<String>,
}

impl MergedIds {
    fn new(mut streams: Vec<IndexStream>) -> Result<Self, StoreError> {
        let mut heads = BinaryHeap::new();
        let mut head_facts = vec![None; streams.len()];
        for (i, stream) in streams.iter_mut().enumerate() {
            if let Some((id, facts)) = stream.next_entry()? {
                heads.push(Reverse((id, i)));
                head_facts[i] = facts;
            }
        }
        Ok(MergedIds {
            streams,
            heads,
            head_facts,
            last: None,
        })
    }
}

impl Iterator for MergedIds {
    type Item = Result<Candidate, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Reverse((id, i)) = self.heads.pop()?;
            let mut facts = self.head_facts[i].take();
            match self.streams[i].next_entry() {
                Ok(Some((next, next_facts))) => {
                    self.heads.push(Reverse((next, i)));
                    self.head_facts[i] = next_facts;
                }
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            // Two entries for one record (only in an inconsistent index) may say different
            // things: trust neither, read the record.
            if self
                .heads
                .peek()
                .is_some_and(|Reverse((next, _))| *next == id)
            {
                facts = None;
            }
            if self.last.as_deref() != Some(id.as_str()) {
                self.last = Some(id.clone());
                return Some(Ok(Candidate {
                    id,
                    record: None,
                    facts,
                }));
            }
        }
    }
}
