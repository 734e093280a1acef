//! The keys of every sled tree, in the tuple encoding of `store::tuple`.

pub use crate::store::tuple::{Key, KeyReader, MalformedKey};

// ---- the keys of each tree -------------------------------------------------------------------

/// `registrations`: (tenant, id) → record.
pub fn registration(tenant: &str, id: &str) -> Key {
    Key::new().text(tenant).text(id)
}

/// Prefix of every registration of one tenant.
pub fn registrations_of(tenant: &str) -> Key {
    Key::new().text(tenant)
}

/// Reads the record id (the last component) of a `registrations` key.
pub fn registration_id(key: &[u8]) -> Result<String, MalformedKey> {
    id_after_tenant(key)
}

/// Prefix of everything one tenant has in any tenant-scoped tree (every tree but `api_keys`
/// and `meta`); the same bytes as the tenant's key in `tenants`.
pub fn tenant_prefix(tenant: &str) -> Key {
    Key::new().text(tenant)
}

/// The first key after every key that starts with `prefix` (a whole number of components).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    // A prefix of components ends with the terminator 0x01; 0x02 sorts after every key that
    // continues it and before any other component that shares its bytes so far.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// Reads the tenant (the first component) of a key of a tenant-scoped tree.
pub fn tenant_of(key: &[u8]) -> Result<String, MalformedKey> {
    KeyReader::new(key).string()
}

/// Reads the tenant id that is the whole of a `tenants` key.
pub fn tenant_id(key: &[u8]) -> Result<String, MalformedKey> {
    let mut reader = KeyReader::new(key);
    let tenant = reader.string()?;
    if !reader.is_empty() {
        return Err(MalformedKey("trailing bytes after tenant id"));
    }
    Ok(tenant)
}

/// Reads the second and last component of a (tenant, id) key: `registrations`, `outbox`,
/// `idempotency`.
fn id_after_tenant(key: &[u8]) -> Result<String, MalformedKey> {
    let mut reader = KeyReader::new(key);
    reader.text()?;
    let id = reader.string()?;
    if !reader.is_empty() {
        return Err(MalformedKey("trailing bytes after the id"));
    }
    Ok(id)
}

/// An index tree's prefix: (tenant, value₁, …, valueₙ), each value as [`index_component`]
/// gives it.
pub fn index_prefix<'v>(tenant: &str, values: impl IntoIterator<Item = &'v str>) -> Key {
    values
        .into_iter()
        .fold(Key::new().text(tenant), |key, value| {
            key.text(index_component(value).as_bytes())
        })
}

/// Index values longer than this (in bytes) are stored digested ([`index_component`]).
pub const INDEXED_VALUE_MAX: usize = 96;

/// How much of a digested value is kept in front of its digest.
const DIGESTED_PREFIX_MAX: usize = 48;

/// The component an index stores for `value`: the value itself when it has at most
/// [`INDEXED_VALUE_MAX`] bytes; a longer one as its first 48 bytes (cut at a character
/// boundary), U+0001 and the hex of the first 16 bytes of its SHA-256.
///
/// Why: a text field a lookup may use holds up to 64 Ki characters, and a key that long makes
/// sled write its leaf (or, with 257 children, an inner node) as a blob file, which it does
/// not make durable before its log points to it (docs/DURABILITY.md, "Power cut", fix 4). With
/// every component under 97 bytes a key stays under ~400 bytes, an inner node under ~100 KiB.
/// Lookups are equality on the whole value, and both writes and lookups go through here; a
/// digested form cannot equal a stored value, which holds no control character.
pub fn index_component(value: &str) -> std::borrow::Cow<'_, str> {
    use sha2::Digest;
    if value.len() <= INDEXED_VALUE_MAX {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut cut = DIGESTED_PREFIX_MAX;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = sha2::Sha256::digest(value.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    std::borrow::Cow::Owned(format!("{}\u{1}{hex}", &value[..cut]))
}

/// An index entry: (tenant, value₁, …, valueₙ, id).
pub fn index_entry<'v>(tenant: &str, values: impl IntoIterator<Item = &'v str>, id: &str) -> Key {
    index_prefix(tenant, values).text(id)
}

/// Reads the record id that ends an index entry, given the number of value components.
pub fn index_entry_id(key: &[u8], value_count: usize) -> Result<String, MalformedKey> {
    let mut reader = KeyReader::new(key);
    for _ in 0..=value_count {
        reader.text()?;
    }
    let id = reader.string()?;
    if !reader.is_empty() {
        return Err(MalformedKey("trailing bytes after index entry id"));
    }
    Ok(id)
}

/// The last key strictly before every key that starts with `prefix + id`: where a reverse
/// scan resumes after the record `id`.
pub fn resume_before(prefix: &Key, id: &str) -> Vec<u8> {
    prefix.clone().text(id).into_bytes()
}

/// The first key strictly after every key that starts with `prefix + id` component, i.e. where a
/// scan resumes after the record `id`.
pub fn resume_after(prefix: &Key, id: &str) -> Vec<u8> {
    let mut bytes = prefix.clone().text(id).into_bytes();
    // A component never ends in 0xFF after its terminator, so appending 0x00 gives the
    // smallest key greater than the entry itself.
    bytes.push(0x00);
    bytes
}

/// `catalog`: (tenant, kind tag, id) → catalog record.
pub fn catalog(tenant: &str, kind: &str, id: &str) -> Key {
    Key::new().text(tenant).text(kind).text(id)
}

/// Reads (kind tag, id) of a `catalog` key.
pub fn catalog_kind_and_id(key: &[u8]) -> Result<(String, String), MalformedKey> {
    let mut reader = KeyReader::new(key);
    reader.text()?;
    let kind = reader.string()?;
    let id = reader.string()?;
    if !reader.is_empty() {
        return Err(MalformedKey("trailing bytes after catalog id"));
    }
    Ok((kind, id))
}

/// Prefix of every catalog record of one kind in a tenant.
pub fn catalog_of(tenant: &str, kind: &str) -> Key {
    Key::new().text(tenant).text(kind)
}

/// `registration_slots`: (tenant, offering, student) → id of the student's live registration.
pub fn registration_slot(tenant: &str, offering: &str, student: &str) -> Key {
    Key::new().text(tenant).text(offering).text(student)
}

/// `outbox`: (tenant, message id) → message.
pub fn outbox(tenant: &str, id: &str) -> Key {
    Key::new().text(tenant).text(id)
}

/// Reads the message id of an `outbox` key.
pub fn outbox_id(key: &[u8]) -> Result<String, MalformedKey> {
    id_after_tenant(key)
}

/// Prefix of every outbox message of one tenant.
pub fn outbox_of(tenant: &str) -> Key {
    Key::new().text(tenant)
}

/// `idempotency`: (tenant, idempotency key) → the first response.
pub fn idempotency(tenant: &str, key: &str) -> Key {
    Key::new().text(tenant).text(key)
}

/// Reads the client's key of an `idempotency` key.
pub fn idempotency_key(key: &[u8]) -> Result<String, MalformedKey> {
    id_after_tenant(key)
}

/// `idempotency_expiry`: (tenant, when the response was stored in whole seconds since the
/// epoch, idempotency key) → nothing. The stored time, not the expiry, so that a changed TTL
/// applies to what is stored already; in time order, so the sweeper reads only what expired.
pub fn idempotency_expiry(tenant: &str, stored_at_seconds: u64, key: &str) -> Key {
    Key::new().text(tenant).u64(stored_at_seconds).text(key)
}

/// The first `idempotency_expiry` key of `tenant` at or after `stored_at_seconds`.
pub fn idempotency_expiry_from(tenant: &str, stored_at_seconds: u64) -> Key {
    Key::new().text(tenant).u64(stored_at_seconds)
}

/// Reads (stored-at seconds, idempotency key) of an `idempotency_expiry` key.
pub fn idempotency_expiry_parts(key: &[u8]) -> Result<(u64, String), MalformedKey> {
    let mut reader = KeyReader::new(key);
    reader.text()?;
    let at = reader.u64()?;
    let client_key = reader.string()?;
    if !reader.is_empty() {
        return Err(MalformedKey("trailing bytes after the idempotency key"));
    }
    Ok((at, client_key))
}

const REFERENCES: &str = "refs";
const ACTIVE_SEATS: &str = "active";

/// `counters`: how many records point at the catalog record (tenant, kind, id).
pub fn reference_count(tenant: &str, kind: &str, id: &str) -> Key {
    Key::new().text(tenant).text(REFERENCES).text(kind).text(id)
}

/// `counters`: how many active registrations an offering has.
pub fn active_count(tenant: &str, offering: &str) -> Key {
    Key::new().text(tenant).text(ACTIVE_SEATS).text(offering)
}

/// What a `counters` key counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterKey {
    /// (tenant, name): a sequence or the registration count.
    Named(String),
    /// (tenant, "active", offering): the offering's active registrations.
    ActiveSeats { offering: String },
    /// (tenant, "refs", kind, id): the records that point at a catalog record.
    References { kind: String, id: String },
}

/// Reads a `counters` key back.
pub fn counter_key(key: &[u8]) -> Result<CounterKey, MalformedKey> {
    let mut reader = KeyReader::new(key);
    reader.text()?;
    let mut parts = Vec::with_capacity(3);
    while !reader.is_empty() {
        parts.push(reader.string()?);
    }
    match parts.as_slice() {
        [name] => Ok(CounterKey::Named(name.clone())),
        [tag, offering] if tag == ACTIVE_SEATS => Ok(CounterKey::ActiveSeats {
            offering: offering.clone(),
        }),
        [tag, kind, id] if tag == REFERENCES => Ok(CounterKey::References {
            kind: kind.clone(),
            id: id.clone(),
        }),
        _ => Err(MalformedKey("not a counter this build writes")),
    }
}

/// `counters`: (tenant, counter name) → u64.
pub fn counter(tenant: &str, name: &str) -> Key {
    Key::new().text(tenant).text(name)
}

/// `tenants`: (tenant) → tenant.
pub fn tenant(tenant: &str) -> Key {
    Key::new().text(tenant)
}

/// `api_keys`: (key id) → key record.
pub fn api_key(key_id: &str) -> Key {
    Key::new().text(key_id)
}

/// `api_keys_by_tenant`: (tenant, key id) → nothing.
pub fn api_key_of_tenant(tenant: &str, key_id: &str) -> Key {
    Key::new().text(tenant).text(key_id)
}

/// Prefix of every key id of one tenant in `api_keys_by_tenant`.
pub fn api_keys_of_tenant(tenant: &str) -> Key {
    Key::new().text(tenant)
}

/// Reads the key id of an `api_keys` key.
pub fn api_key_id(key: &[u8]) -> Result<String, MalformedKey> {
    let mut reader = KeyReader::new(key);
    let id = reader.string()?;
    if !reader.is_empty() {
        return Err(MalformedKey("trailing bytes after key id"));
    }
    Ok(id)
}

/// Reads the key id of an `api_keys_by_tenant` key.
pub fn api_key_id_of_tenant_entry(key: &[u8]) -> Result<String, MalformedKey> {
    let mut reader = KeyReader::new(key);
    reader.text()?;
    reader.string()
}

/// `meta`: (name) → value.
pub fn meta(name: &str) -> Key {
    Key::new().text(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn index_values_up_to_96_bytes_are_kept_and_longer_ones_digested_short() {
        let kept = "k".repeat(INDEXED_VALUE_MAX);
        assert_eq!(index_component(&kept), kept.as_str());
        let shared = "a".repeat(100);
        let (x, y) = (format!("{shared}x"), format!("{shared}y"));
        let (dx, dy) = (index_component(&x), index_component(&y));
        assert_ne!(dx, dy, "values that share their first 48 bytes stay apart");
        assert_eq!(
            dx,
            index_component(&x),
            "the same value, the same component"
        );
        assert!(dx.starts_with(&"a".repeat(48)) && dx.contains('\u{1}'));
        // Multibyte characters: cut at a boundary, and still short.
        let wide = index_component(&"€".repeat(50_000)).into_owned();
        assert!(wide.len() <= INDEXED_VALUE_MAX, "{}", wide.len());
        assert!(wide.starts_with(&"€".repeat(16)));
        let key = index_entry("tenant", [x.as_str(), "€".repeat(50_000).as_str()], "01ID");
        assert!(key.as_bytes().len() < 200);
        assert_eq!(index_entry_id(key.as_bytes(), 2).unwrap(), "01ID");
    }

    fn encode(tuple: &[Vec<u8>]) -> Vec<u8> {
        tuple.iter().fold(Key::new(), |k, c| k.text(c)).into_bytes()
    }

    fn component() -> impl Strategy<Value = Vec<u8>> {
        // Bias towards the bytes that matter for the layout: 0x00, 0x01, 0xFF.
        prop::collection::vec(
            prop_oneof![Just(0u8), Just(1u8), Just(0xFFu8), any::<u8>()],
            0..6,
        )
    }

    fn tuple() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(component(), 1..4)
    }

    proptest! {
        #[test]
        fn keys_sort_like_their_tuples(a in tuple(), b in tuple()) {
            prop_assert_eq!(encode(&a).cmp(&encode(&b)), a.cmp(&b));
        }

        #[test]
        fn a_prefix_scan_never_matches_a_longer_value(
            tenant in component(), value in component(), other in component(), id in component()
        ) {
            prop_assume!(value != other);
            let prefix = Key::new().text(&tenant).text(&value);
            let entry = Key::new().text(&tenant).text(&other).text(&id);
            prop_assert!(!entry.as_bytes().starts_with(prefix.as_bytes()));
        }

        #[test]
        fn components_read_back(t in tuple(), n in any::<u64>()) {
            let key = t.iter().fold(Key::new(), |k, c| k.text(c)).u64(n);
            let mut reader = KeyReader::new(key.as_bytes());
            for c in &t {
                let read = reader.text().unwrap();
                prop_assert_eq!(read.as_ref(), c.as_slice());
            }
            prop_assert_eq!(reader.u64().unwrap(), n);
            prop_assert!(reader.is_empty());
        }

        #[test]
        fn resume_after_sorts_after_the_entry_and_before_the_next(
            prefix in component(), a in "[a-z0-9|:_-]{1,6}", b in "[a-z0-9|:_-]{1,6}"
        ) {
            prop_assume!(a < b);
            let p = Key::new().text(&prefix);
            let resume = resume_after(&p, &a);
            prop_assert!(resume.as_slice() > p.clone().text(&a).as_bytes());
            prop_assert!(resume.as_slice() < p.clone().text(&b).as_bytes());
        }
    }

    #[test]
    fn index_entries_decode_their_id() {
        let key = index_entry("acme", ["s1", "c1"], "01J000");
        assert_eq!(index_entry_id(key.as_bytes(), 2).unwrap(), "01J000");
        assert_eq!(
            registration_id(registration("acme", "X").as_bytes()).unwrap(),
            "X"
        );
    }

    #[test]
    fn tree_keys_read_back() {
        assert_eq!(tenant_id(tenant("acme").as_bytes()).unwrap(), "acme");
        assert_eq!(
            tenant_of(registration("acme", "X").as_bytes()).unwrap(),
            "acme"
        );
        assert_eq!(
            catalog_kind_and_id(catalog("acme", "contact", "C1").as_bytes()).unwrap(),
            ("contact".to_owned(), "C1".to_owned())
        );
        assert_eq!(outbox_id(outbox("acme", "M1").as_bytes()).unwrap(), "M1");
        assert_eq!(
            idempotency_key(idempotency("acme", "k").as_bytes()).unwrap(),
            "k"
        );
        assert_eq!(api_key_id(api_key("K1").as_bytes()).unwrap(), "K1");
        assert!(tenant_id(registration("acme", "X").as_bytes()).is_err());
    }

    #[test]
    fn every_counter_key_reads_back_as_what_it_counts() {
        assert_eq!(
            counter_key(counter("acme", "registration_count").as_bytes()).unwrap(),
            CounterKey::Named("registration_count".into())
        );
        assert_eq!(
            counter_key(active_count("acme", "O1").as_bytes()).unwrap(),
            CounterKey::ActiveSeats {
                offering: "O1".into()
            }
        );
        assert_eq!(
            counter_key(reference_count("acme", "contact", "C1").as_bytes()).unwrap(),
            CounterKey::References {
                kind: "contact".into(),
                id: "C1".into()
            }
        );
        let odd = Key::new().text("acme").text("active").text("a").text("b");
        assert!(counter_key(odd.as_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn a_tenants_keys_lie_between_its_prefix_and_the_prefix_end(
            tenant in "[A-Za-z0-9_|:-]{1,8}", other in "[A-Za-z0-9_|:-]{1,8}", rest in tuple()
        ) {
            let prefix = tenant_prefix(&tenant);
            let end = prefix_end(prefix.as_bytes());
            let inside = rest.iter().fold(prefix.clone(), |k, c| k.text(c));
            prop_assert!(inside.as_bytes() >= prefix.as_bytes() && inside.as_bytes() < end.as_slice());
            prop_assume!(other != tenant);
            let outside = rest.iter().fold(tenant_prefix(&other), |k, c| k.text(c));
            prop_assert!(outside.as_bytes() < prefix.as_bytes() || outside.as_bytes() >= end.as_slice());
        }
    }

    #[test]
    fn malformed_bytes_are_an_error_not_a_panic() {
        assert!(KeyReader::new(&[0x00]).text().is_err());
        assert!(KeyReader::new(&[0x00, 0x05]).text().is_err());
        assert!(KeyReader::new(b"abc").text().is_err());
        assert!(KeyReader::new(&[1, 2]).u64().is_err());
    }
}
