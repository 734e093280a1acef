//! Values over [`SPLIT_ABOVE`] bytes are stored in pieces, so that sled never writes a blob
//! file.
//!
//! **Why.** sled writes a page (a tree node with its entries) larger than a quarter of its
//! 512 KiB segment to a file of its own under `blobs/`, and its log points to that file. sled
//! fsyncs neither the file nor its name, and any thread that touches the tree may write one (a
//! reader helping a split, a merge, the segment cleaner of sled's own thread), while any
//! other may fsync the log at that moment (sled's flusher, a truncation, strict mode's
//! fdatasync). The power-cut test found the outcome twice: a log made durable that points to
//! a blob the cut took (sled then panics while opening the database: "tried to serialize
//! Uninitialized"), and one that points to a blob left empty (sled reads it as the log's torn
//! end and throws away every later write, answered ones included). Second names for blob
//! files (`pipeline::BlobFiles`) narrow the window but cannot order another thread's blob
//! before a log fsync it does not know of. Not writing blobs closes it: the log is then the
//! only file sled writes, and its checksummed messages survive a cut as a prefix.
//!
//! **How.** A leaf holds at most 17 entries (sled splits one past 16), so a leaf stays under
//! the 128 KiB blob threshold while each value stays under 6 KiB (17 × (6 KiB + key) ≈
//! 108 KiB). A longer value is stored as a 13-byte head, `[SPLIT, piece set (u64), length
//! (u32)]`, and its bytes in pieces of [`PIECE_BYTES`] in the `value_pieces` tree under
//! (piece set, number). The piece set is a fresh id from sled (`generate_id`) for every write,
//! so a reader outside a transaction that reads a head and then its pieces never mixes two
//! versions of a value: a rewrite removes the old set and writes a new one in one transaction,
//! and a reader that finds a piece gone reads the head again ([`join`]). Only the trees whose
//! values are our encoded records, events and responses are split ([`TreeId::may_split`]):
//! their values start with a format byte, never [`SPLIT`].

use super::tx::TreeId;
use crate::store::StoreError;
use sled::transaction::{TransactionalTree, UnabortableTransactionError};
use sled::IVec;

/// Values longer than this are split. With the longest key of a split tree (well under 1 KiB)
/// 17 entries fit in sled's 131,052-byte inline message.
pub const SPLIT_ABOVE: usize = 6 * 1024;

/// The length of each piece but the last.
pub const PIECE_BYTES: usize = 6 * 1024;

/// The first byte of a split value's head: no format byte (`codec`) is this high.
pub const SPLIT: u8 = 0xC5;

const HEAD_BYTES: usize = 13;

/// A split value's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The piece set: the first 8 bytes of each piece's key.
    pub set: u64,
    /// The value's length.
    pub len: u32,
}

impl Head {
    /// The head stored in `value`'s place, if `value` is one.
    pub fn of(value: &[u8]) -> Option<Head> {
        if value.len() != HEAD_BYTES || value[0] != SPLIT {
            return None;
        }
        let set = u64::from_be_bytes(value[1..9].try_into().ok()?);
        let len = u32::from_be_bytes(value[9..13].try_into().ok()?);
        Some(Head { set, len })
    }

    fn encode(self) -> [u8; HEAD_BYTES] {
        let mut out = [0u8; HEAD_BYTES];
        out[0] = SPLIT;
        out[1..9].copy_from_slice(&self.set.to_be_bytes());
        out[9..13].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// How many pieces the value has.
    pub fn pieces(self) -> u32 {
        (self.len as usize).div_ceil(PIECE_BYTES) as u32
    }

    /// The keys of its pieces, in order.
    pub fn piece_keys(self) -> impl Iterator<Item = [u8; 12]> {
        (0..self.pieces()).map(move |n| piece_key(self.set, n))
    }
}

/// The key of piece `n` of set `set`.
pub fn piece_key(set: u64, n: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&set.to_be_bytes());
    key[8..].copy_from_slice(&n.to_be_bytes());
    key
}

/// The piece set a key of `value_pieces` belongs to.
pub fn set_of_piece(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))
}

/// The length of the value stored as `stored` (a head or the value itself).
pub fn value_len(stored: &[u8]) -> usize {
    Head::of(stored).map_or(stored.len(), |head| head.len as usize)
}

/// Writes `value` at `key` of `tree` (`None`: removes it) inside a transaction, split when it
/// is long, and removes the pieces of the value it replaces.
pub fn write_in(
    tree: &TransactionalTree,
    pieces: &TransactionalTree,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), UnabortableTransactionError> {
    if let Some(old) = tree.get(key)?.as_deref().and_then(Head::of) {
        for piece in old.piece_keys() {
            pieces.remove(&piece[..])?;
        }
    }
    match value {
        None => {
            tree.remove(key)?;
        }
        Some(value) if value.len() <= SPLIT_ABOVE => {
            tree.insert(key, value)?;
        }
        Some(value) => {
            let head = Head {
                set: pieces.generate_id()?,
                len: value.len() as u32,
            };
            for (piece, bytes) in head.piece_keys().zip(value.chunks(PIECE_BYTES)) {
                pieces.insert(&piece[..], bytes)?;
            }
            tree.insert(key, &head.encode()[..])?;
        }
    }
    Ok(())
}

/// The value stored as `stored`, read inside a transaction (which sees one version of
/// everything). Err: a piece is missing, which only damage explains.
pub fn join_in(pieces: &TransactionalTree, stored: IVec) -> Result<IVec, JoinError> {
    let Some(head) = Head::of(&stored) else {
        return Ok(stored);
    };
    match assemble(head, |piece| pieces.get(piece).map_err(JoinError::Sled))? {
        Some(value) => check_len(head, value),
        None => Err(JoinError::Missing(head)),
    }
}

/// The bytes of `head`'s pieces in order, read with `get`; `None` when one is missing.
fn assemble<E>(
    head: Head,
    mut get: impl FnMut(&[u8]) -> Result<Option<IVec>, E>,
) -> Result<Option<Vec<u8>>, E> {
    let mut value = Vec::with_capacity(head.len as usize);
    for piece in head.piece_keys() {
        match get(&piece)? {
            Some(bytes) => value.extend_from_slice(&bytes),
            None => return Ok(None),
        }
    }
    Ok(Some(value))
}

/// Why a split value could not be put back together.
#[derive(Debug)]
pub enum JoinError {
    Missing(Head),
    Length(Head, usize),
    Sled(UnabortableTransactionError),
}

impl JoinError {
    pub fn describe(&self) -> String {
        match self {
            JoinError::Missing(head) => format!(
                "a piece of the split value {:016x} ({} bytes) is missing",
                head.set, head.len
            ),
            JoinError::Length(head, found) => format!(
                "the split value {:016x} should have {} bytes, its pieces have {found}",
                head.set, head.len
            ),
            JoinError::Sled(e) => format!("{e:?}"),
        }
    }
}

fn check_len(head: Head, value: Vec<u8>) -> Result<IVec, JoinError> {
    if value.len() != head.len as usize {
        return Err(JoinError::Length(head, value.len()));
    }
    Ok(IVec::from(value))
}

/// How many times a reader outside a transaction reads a value again when a write replaced
/// it between its head and its pieces. Each retry means a write committed meanwhile.
const REREADS: usize = 16;

/// The value stored as `stored` at `key` of `tree`, read outside a transaction: when a piece is
/// gone, a write replaced the value after its head was read, and the head is read again.
/// `Ok(None)`: a write removed the value meanwhile.
pub fn join(
    tree: &sled::Tree,
    pieces: &sled::Tree,
    key: &[u8],
    stored: IVec,
) -> Result<Option<IVec>, StoreError> {
    let mut stored = stored;
    for _ in 0..REREADS {
        let Some(head) = Head::of(&stored) else {
            return Ok(Some(stored));
        };
        if let Some(value) = assemble(head, |piece| pieces.get(piece).map_err(StoreError::from))? {
            return check_len(head, value)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(e.describe()));
        }
        match tree.get(key).map_err(StoreError::from)? {
            None => return Ok(None),
            Some(again) if again == stored => {
                return Err(StoreError::Corrupt(JoinError::Missing(head).describe()))
            }
            Some(again) => stored = again,
        }
    }
    Err(StoreError::Storage(
        "a value kept changing while it was read; try again".into(),
    ))
}

/// Marks in `meta` that every long value was split.
const SPLIT_MARKER: &str = "long_values_split";

/// How many values one transaction of [`backfill`] rewrites.
const BACKFILL_BATCH: usize = 32;

/// Splits every long value a build before this one stored whole, once per data directory,
/// at open (before the server answers): until then its pages could still be written as blob
/// files. Interrupted, it runs again (a value already split is a head, and is left alone).
/// Returns how many values it split.
pub fn backfill(db: &sled::Db, meta: &sled::Tree, trees: &[sled::Tree]) -> Result<u64, StoreError> {
    use sled::Transactional;
    let marker = super::keys::meta(SPLIT_MARKER);
    if meta.contains_key(marker.as_bytes())? {
        return Ok(0);
    }
    let pieces = &trees[TreeId::ValuePieces.position()];
    let mut split = 0;
    for id in TreeId::all().filter(|id| id.may_split()) {
        let tree = &trees[id.position()];
        let mut long = Vec::new();
        for entry in tree.iter() {
            let (key, stored) = entry?;
            if stored.len() > SPLIT_ABOVE {
                long.push(key);
            }
        }
        for keys in long.chunks(BACKFILL_BATCH) {
            (tree, pieces)
                .transaction(|(tree, pieces)| {
                    for key in keys {
                        // Read again inside the transaction: what it rewrites is what is there.
                        if let Some(stored) = tree.get(key)? {
                            if stored.len() > SPLIT_ABOVE {
                                write_in(tree, pieces, key, Some(&stored))?;
                            }
                        }
                    }
                    Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
                })
                .map_err(|e| match e {
                    sled::transaction::TransactionError::Storage(e) => StoreError::from(e),
                    sled::transaction::TransactionError::Abort(()) => {
                        StoreError::Storage("splitting long values aborted".into())
                    }
                })?;
            split += keys.len() as u64;
        }
    }
    db.flush()?;
    meta.insert(marker.as_bytes(), &[1u8][..])?;
    db.flush()?;
    Ok(split)
}

/// A tree read outside a transaction, with split values put back together. Keys and order
/// are the tree's; [`Stored::raw`] reads the stored form.
#[derive(Clone, Copy)]
pub struct Stored<'a> {
    tree: &'a sled::Tree,
    pieces: &'a sled::Tree,
    splits: bool,
}

/// An entry as [`Stored`] reads it.
pub type Entry = Result<(IVec, IVec), StoreError>;

impl<'a> Stored<'a> {
    pub fn new(id: TreeId, tree: &'a sled::Tree, pieces: &'a sled::Tree) -> Stored<'a> {
        Stored {
            tree,
            pieces,
            splits: id.may_split(),
        }
    }

    /// The tree as sled stores it: heads in place of split values.
    pub fn raw(&self) -> &'a sled::Tree {
        self.tree
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<IVec>, StoreError> {
        let key = key.as_ref();
        match self.tree.get(key).map_err(StoreError::from)? {
            Some(stored) if self.splits => join(self.tree, self.pieces, key, stored),
            other => Ok(other),
        }
    }

    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        self.tree.contains_key(key).map_err(StoreError::from)
    }

    /// Every entry in key order; an entry removed while the walk reached it is skipped.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Entry> + 'a {
        self.entries(self.tree.iter())
    }

    pub fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = Entry> + 'a {
        self.entries(self.tree.range(range))
    }

    pub fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl DoubleEndedIterator<Item = Entry> + 'a {
        self.entries(self.tree.scan_prefix(prefix))
    }

    pub fn first(&self) -> Result<Option<(IVec, IVec)>, StoreError> {
        self.iter().next().transpose()
    }

    pub fn last(&self) -> Result<Option<(IVec, IVec)>, StoreError> {
        self.iter().next_back().transpose()
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// As [`Stored::range`], for `check`: a split value that does not go back together (a
    /// piece missing or of the wrong length: damage, as no write leaves one so) comes as its
    /// head instead of an error that would end the walk. No reader decodes a head
    /// (`codec::decode` names it), so the check reports that value as it reports any value
    /// that does not decode, and goes on.
    pub fn range_keeping_damage<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = Entry> + 'a {
        joined(
            self.splits,
            Damage::KeepHead,
            self.tree,
            self.pieces,
            self.tree.range(range),
        )
    }

    /// As [`Stored::range`], for a scan that outlives the handles it came from.
    pub fn range_owned<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = Entry> + Send + 'static {
        joined(
            self.splits,
            Damage::Fail,
            self.tree.clone(),
            self.pieces.clone(),
            self.tree.range(range),
        )
    }

    fn entries(&self, iter: sled::Iter) -> impl DoubleEndedIterator<Item = Entry> + 'a {
        joined(self.splits, Damage::Fail, self.tree, self.pieces, iter)
    }
}

/// What a walk does with a split value that does not go back together.
#[derive(Clone, Copy)]
enum Damage {
    /// Answers the error (every reader but `check`).
    Fail,
    /// Answers the head in the value's place ([`Stored::range_keeping_damage`]).
    KeepHead,
}

/// `iter`'s entries with split values put back together (when `splits`); an entry removed
/// while the walk reached it is skipped.
fn joined<T: std::borrow::Borrow<sled::Tree>>(
    splits: bool,
    damage: Damage,
    tree: T,
    pieces: T,
    iter: sled::Iter,
) -> impl DoubleEndedIterator<Item = Entry> {
    iter.filter_map(move |entry| {
        let (key, stored) = match entry {
            Ok(entry) => entry,
            Err(e) => return Some(Err(StoreError::from(e))),
        };
        if !splits {
            return Some(Ok((key, stored)));
        }
        let head = matches!(damage, Damage::KeepHead).then(|| stored.clone());
        match (join(tree.borrow(), pieces.borrow(), &key, stored), head) {
            (Err(StoreError::Corrupt(_)), Some(head)) => Some(Ok((key, head))),
            (joined, _) => joined
                .transpose()
                .map(|value| value.map(|value| (key, value))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sled::Transactional;

    fn trees() -> (sled::Db, sled::Tree, sled::Tree) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("registrations").unwrap();
        let pieces = db.open_tree("value_pieces").unwrap();
        (db, tree, pieces)
    }

    fn write(tree: &sled::Tree, pieces: &sled::Tree, key: &[u8], value: Option<&[u8]>) {
        (tree, pieces)
            .transaction(|(t, p)| {
                write_in(t, p, key, value)?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
    }

    fn value(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    proptest! {
        /// Any sequence of writes reads back as the last one, in and outside a transaction,
        /// and leaves exactly the pieces of the values stored.
        #[test]
        fn values_read_back_whole_and_leave_no_stray_pieces(
            writes in proptest::collection::vec((0u8..3, proptest::option::of(0usize..40_000)), 1..12)
        ) {
            let (_db, tree, pieces) = trees();
            let stored = Stored::new(TreeId::Registrations, &tree, &pieces);
            let mut expected = std::collections::BTreeMap::new();
            for (n, (key, len)) in writes.iter().enumerate() {
                let key = [b'k', *key];
                let new = len.map(|len| value(len, n as u8));
                write(&tree, &pieces, &key, new.as_deref());
                match new {
                    Some(v) => expected.insert(key.to_vec(), v),
                    None => expected.remove(key.as_slice()),
                };
            }
            let mut wanted_pieces = 0;
            for (key, want) in &expected {
                prop_assert_eq!(stored.get(key).unwrap().unwrap().to_vec(), want.clone());
                let raw = tree.get(key).unwrap().unwrap();
                prop_assert!(raw.len() <= SPLIT_ABOVE);
                prop_assert_eq!(value_len(&raw), want.len());
                wanted_pieces += Head::of(&raw).map_or(0, |h| h.pieces() as usize);
                let inside = (&tree, &pieces).transaction(|(t, p)| {
                    let got = join_in(p, t.get(key)?.unwrap()).unwrap();
                    Ok::<_, sled::transaction::ConflictableTransactionError<()>>(got)
                }).unwrap();
                prop_assert_eq!(inside.to_vec(), want.clone());
            }
            prop_assert_eq!(pieces.len(), wanted_pieces);
            let listed: Vec<Vec<u8>> = stored.iter().map(|e| e.unwrap().1.to_vec()).collect();
            prop_assert_eq!(listed, expected.values().cloned().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_value_at_the_limit_stays_whole_and_one_byte_more_is_split() {
        let (_db, tree, pieces) = trees();
        write(&tree, &pieces, b"a", Some(&value(SPLIT_ABOVE, 1)));
        write(&tree, &pieces, b"b", Some(&value(SPLIT_ABOVE + 1, 2)));
        assert_eq!(tree.get(b"a").unwrap().unwrap().len(), SPLIT_ABOVE);
        let head = Head::of(&tree.get(b"b").unwrap().unwrap()).unwrap();
        assert_eq!((head.len as usize, head.pieces()), (SPLIT_ABOVE + 1, 2));
    }

    #[test]
    fn a_reader_that_finds_a_piece_gone_reads_the_new_value() {
        let (_db, tree, pieces) = trees();
        write(&tree, &pieces, b"a", Some(&value(20_000, 1)));
        let old_head = tree.get(b"a").unwrap().unwrap();
        write(&tree, &pieces, b"a", Some(&value(30_000, 2)));
        // As if the head was read before the rewrite and the pieces after it.
        let read = join(&tree, &pieces, b"a", old_head.clone())
            .unwrap()
            .unwrap();
        assert_eq!(read.to_vec(), value(30_000, 2));
        write(&tree, &pieces, b"a", None);
        assert_eq!(join(&tree, &pieces, b"a", old_head).unwrap(), None);
    }

    #[test]
    fn a_missing_piece_of_the_current_value_is_damage() {
        let (_db, tree, pieces) = trees();
        write(&tree, &pieces, b"a", Some(&value(20_000, 1)));
        let head = Head::of(&tree.get(b"a").unwrap().unwrap()).unwrap();
        pieces.remove(piece_key(head.set, 1)).unwrap();
        let stored = Stored::new(TreeId::Registrations, &tree, &pieces);
        assert!(matches!(stored.get(b"a"), Err(StoreError::Corrupt(_))));
    }

    /// A database of an earlier format holds long values whole: opening it splits them once,
    /// and they read back the same.
    #[test]
    fn opening_a_database_of_an_earlier_format_splits_its_long_values_once() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let trees: Vec<sled::Tree> = TreeId::all()
            .map(|id| db.open_tree(id.name()).unwrap())
            .collect();
        let meta = db.open_tree("meta").unwrap();
        let tree = |id: TreeId| &trees[id.position()];
        tree(TreeId::Registrations)
            .insert(b"long", value(50_000, 1))
            .unwrap();
        tree(TreeId::Registrations)
            .insert(b"short", value(100, 2))
            .unwrap();
        tree(TreeId::Events)
            .insert(b"block", value(SPLIT_ABOVE + 1, 3))
            .unwrap();
        // Not a tree whose values are split: left as it is.
        tree(TreeId::Counters)
            .insert(b"c", value(9_000, 4))
            .unwrap();
        assert_eq!(backfill(&db, &meta, &trees).unwrap(), 2);
        let pieces = tree(TreeId::ValuePieces);
        for (id, key, len, seed) in [
            (TreeId::Registrations, &b"long"[..], 50_000, 1),
            (TreeId::Registrations, &b"short"[..], 100, 2),
            (TreeId::Events, &b"block"[..], SPLIT_ABOVE + 1, 3),
            (TreeId::Counters, &b"c"[..], 9_000, 4),
        ] {
            let stored = Stored::new(id, tree(id), pieces);
            assert_eq!(stored.get(key).unwrap().unwrap().to_vec(), value(len, seed));
        }
        assert!(Head::of(&tree(TreeId::Registrations).get(b"long").unwrap().unwrap()).is_some());
        assert_eq!(
            tree(TreeId::Counters).get(b"c").unwrap().unwrap().len(),
            9_000
        );
        let pieces_after = pieces.len();
        assert_eq!(backfill(&db, &meta, &trees).unwrap(), 0, "done once");
        assert_eq!(pieces.len(), pieces_after);
    }

    #[test]
    fn trees_that_do_not_split_read_their_values_as_stored() {
        let (_db, tree, pieces) = trees();
        let looks_like_a_head = Head { set: 1, len: 99 }.encode();
        tree.insert(b"a", &looks_like_a_head[..]).unwrap();
        let stored = Stored::new(TreeId::Counters, &tree, &pieces);
        assert_eq!(stored.get(b"a").unwrap().unwrap(), &looks_like_a_head[..]);
    }
}
