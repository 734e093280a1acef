//! Reading change events: a record's history and the tenant's change feed
//! (`domain::events`; each engine keeps them, `store::events`).

use super::blocking;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::transfer::RecordKind;
use crate::error::{ApiError, ErrorCode};
use crate::store::records::{ChangesPage, HistoryPage};
use crate::store::Db;

/// Longest cursor accepted: a u64 has at most 20 digits.
const MAX_CURSOR_DIGITS: usize = 20;

/// A feed cursor (`after`, `Last-Event-ID`): the sequence number of the last event seen, as
/// the feed wrote it. Anything else is 400 `invalid_cursor`.
pub fn parse_cursor(text: &str) -> Result<u64, ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidCursor,
            "the cursor must be one the change feed gave out (`cursor`, or an SSE event's id)",
        )
    };
    if text.is_empty()
        || text.len() > MAX_CURSOR_DIGITS
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    text.parse().map_err(|_| invalid())
}

/// `kinds`: a comma-separated list of record kinds (`registration`, `contact`, …); empty or
/// absent means every kind.
pub fn parse_kinds(list: Option<&str>) -> Result<Vec<RecordKind>, ApiError> {
    let mut kinds = Vec::new();
    for tag in list
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
    {
        let kind = RecordKind::from_tag(tag).ok_or_else(|| {
            let known: Vec<&str> = RecordKind::EXPORT_ORDER.iter().map(|k| k.tag()).collect();
            ApiError::new(
                ErrorCode::InvalidQuery,
                format!(
                    "query parameter kinds: {tag:?} is not a record kind (known: {})",
                    known.join(", ")
                ),
            )
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

fn not_found(kind: RecordKind) -> ApiError {
    let noun = match kind {
        RecordKind::Registration => "course registration",
        RecordKind::Catalog(kind) => kind.noun(),
    };
    ApiError::new(ErrorCode::NotFound, format!("{noun} not found"))
}

/// A page of one record's events, newest first. A record that no longer exists keeps its
/// history for admin keys (until compaction); to others, and when no event is left, it is
/// 404 like the record.
pub async fn history(
    store: &Db,
    tenant: &TenantId,
    kind: RecordKind,
    id: &RecordId,
    start: Option<String>,
    limit: usize,
    admin: bool,
) -> Result<HistoryPage, ApiError> {
    let (t, record) = (tenant.clone(), id.clone());
    let (page, exists) = blocking(store, move |s| {
        let page = s.history(&t, kind, &record, start.as_deref(), limit)?;
        let exists = match kind {
            RecordKind::Registration => s.registration(&t, &record)?.is_some(),
            RecordKind::Catalog(k) => s.catalog_record(&t, k, &record)?.is_some(),
        };
        Ok((page, exists))
    })
    .await?;
    if exists || (admin && !page.items.is_empty()) {
        Ok(page)
    } else {
        Err(not_found(kind))
    }
}

/// The tenant's events after `after`, in sequence order.
pub async fn changes(
    store: &Db,
    tenant: &TenantId,
    after: u64,
    kinds: Vec<RecordKind>,
    limit: usize,
) -> Result<ChangesPage, ApiError> {
    let tenant = tenant.clone();
    blocking(store, move |s| s.changes(&tenant, after, &kinds, limit)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::CatalogKind;

    #[test]
    fn a_cursor_is_a_sequence_number_and_nothing_else() {
        assert_eq!(parse_cursor("0").unwrap(), 0);
        assert_eq!(parse_cursor("42").unwrap(), 42);
        assert_eq!(parse_cursor("18446744073709551615").unwrap(), u64::MAX);
        for bad in [
            "",
            "-1",
            "1.5",
            "abc",
            " 1",
            "18446744073709551616",
            "1e3",
            "+1",
        ] {
            let err = parse_cursor(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidCursor, "{bad:?}");
        }
    }

    #[test]
    fn kinds_are_record_kind_tags() {
        assert!(parse_kinds(None).unwrap().is_empty());
        assert_eq!(
            parse_kinds(Some("registration,contact,registration")).unwrap(),
            [
                RecordKind::Registration,
                RecordKind::Catalog(CatalogKind::Contact)
            ]
        );
        assert_eq!(
            parse_kinds(Some("widgets")).unwrap_err().code,
            ErrorCode::InvalidQuery
        );
    }
}
