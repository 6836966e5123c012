use crate::{BlobHash, Error, Limits, StagedBlob, Version};

/// What a batch expects of a key before it commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The key does not exist.
    Absent,
    /// The key exists and was last written by the commit with this version.
    Version(Version),
    /// The key exists, whatever its version: a record that may change but must not be
    /// gone (a mailbox a delivery files into may be renamed meanwhile, not deleted). It
    /// needs no read before the commit.
    Present,
}

/// A counter added to a batch, to read its value in [`crate::Committed::counters`] or to
/// patch it into a key or value of the same batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterRef(pub(crate) usize);

impl CounterRef {
    /// The index of this counter's value in [`crate::Committed::counters`].
    pub fn index(self) -> usize {
        self.0
    }
}

/// Where a patch writes a counter's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchTarget {
    Key,
    Value,
}

/// Writes the value of a counter (8 bytes, big-endian, so keys sort by it) at `offset` in
/// the key or value of a [`Batch::set_patched`]. This lets one batch take the next UID of a
/// mailbox and write the message under it, in commit order, without a retry loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patch {
    pub counter: CounterRef,
    pub target: PatchTarget,
    pub offset: usize,
}

#[derive(Debug)]
pub(crate) enum Op {
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        patches: Vec<Patch>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// `max`: the commit fails if a positive `delta` would take the counter above it.
    Add {
        key: Vec<u8>,
        delta: i64,
        max: Option<i64>,
    },
    /// Takes `refs` references (at least 1) on the blob.
    BlobAcquire(StagedBlob, u64),
    BlobRelease(BlobHash),
}

/// An atomic, conditional write. Expectations are checked against the state before the
/// batch; then the operations apply in order. All of it commits, durably, or none of it.
#[derive(Debug, Default)]
pub struct Batch {
    pub(crate) expects: Vec<(Vec<u8>, Expect)>,
    pub(crate) ops: Vec<Op>,
    n_counters: usize,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn is_empty(&self) -> bool {
        self.expects.is_empty() && self.ops.is_empty()
    }

    /// Commit only if `key` does not exist.
    pub fn expect_absent(&mut self, key: &[u8]) -> &mut Batch {
        self.expects.push((key.to_vec(), Expect::Absent));
        self
    }

    /// Commit only if `key` still has `version`.
    pub fn expect_version(&mut self, key: &[u8], version: Version) -> &mut Batch {
        self.expects.push((key.to_vec(), Expect::Version(version)));
        self
    }

    /// Commit only if `key` exists, whatever its version.
    pub fn expect_present(&mut self, key: &[u8]) -> &mut Batch {
        self.expects.push((key.to_vec(), Expect::Present));
        self
    }

    /// Commit only if `key` is as `expect` says.
    pub fn expect(&mut self, key: &[u8], expect: Expect) -> &mut Batch {
        self.expects.push((key.to_vec(), expect));
        self
    }

    pub fn set(&mut self, key: &[u8], value: &[u8]) -> &mut Batch {
        self.ops.push(Op::Set { key: key.to_vec(), value: value.to_vec(), patches: Vec::new() });
        self
    }

    /// Sets `key` to `value` after writing counters of this batch into them (see [`Patch`]).
    /// The bytes at each patch's offset are overwritten.
    pub fn set_patched(&mut self, key: &[u8], value: &[u8], patches: &[Patch]) -> &mut Batch {
        self.ops.push(Op::Set { key: key.to_vec(), value: value.to_vec(), patches: patches.to_vec() });
        self
    }

    pub fn delete(&mut self, key: &[u8]) -> &mut Batch {
        self.ops.push(Op::Delete { key: key.to_vec() });
        self
    }

    /// Adds `delta` to the counter `key` (created at 0 if missing). Counters are 8-byte
    /// big-endian `i64` values; read them with [`crate::Store::counter`].
    pub fn add(&mut self, key: &[u8], delta: i64) -> CounterRef {
        self.push_add(key, delta, None)
    }

    /// Like [`Batch::add`], but the whole batch fails with [`Error::CounterBound`] if a
    /// positive `delta` would take the counter above `max`. The bound is checked by the
    /// backend inside the commit, against the value the commit sees, so concurrent
    /// batches can never together pass it (a quota checked before the commit can be
    /// overshot by writers racing). A negative or zero `delta` always applies: giving
    /// back is never refused, even above a bound that was lowered meanwhile.
    pub fn add_at_most(&mut self, key: &[u8], delta: i64, max: i64) -> CounterRef {
        self.push_add(key, delta, Some(max))
    }

    fn push_add(&mut self, key: &[u8], delta: i64, max: Option<i64>) -> CounterRef {
        self.ops.push(Op::Add { key: key.to_vec(), delta, max });
        self.n_counters += 1;
        CounterRef(self.n_counters - 1)
    }

    /// Takes a reference on a staged blob: stores it if it is new, else counts one more
    /// reference (the staged copy is then dropped).
    pub fn blob_acquire(&mut self, staged: StagedBlob) -> &mut Batch {
        self.blob_acquire_n(staged, 1)
    }

    /// Takes `refs` references on a staged blob at once (one message delivered to several
    /// accounts is staged and written once). `refs` of 0 counts as 1.
    pub fn blob_acquire_n(&mut self, staged: StagedBlob, refs: u64) -> &mut Batch {
        self.ops.push(Op::BlobAcquire(staged, refs.max(1)));
        self
    }

    /// Drops a reference on a stored blob; the blob is deleted with its last reference.
    pub fn blob_release(&mut self, hash: &BlobHash) -> &mut Batch {
        self.ops.push(Op::BlobRelease(*hash));
        self
    }

    /// Checks the batch against the limits and its patches against its counters.
    pub(crate) fn check(&self, limits: &Limits) -> Result<(), Error> {
        let n_ops = self.ops.len() + self.expects.len();
        limit("operations in a batch", "batch_ops_max", n_ops, limits.batch_ops_max)?;
        for (key, _) in &self.expects {
            limit("key length", "key_bytes_max", key.len(), limits.key_bytes_max)?;
        }
        let mut n_counters_before = 0;
        for op in &self.ops {
            match op {
                Op::Set { key, value, patches } => {
                    limit("key length", "key_bytes_max", key.len(), limits.key_bytes_max)?;
                    limit("value length", "value_bytes_max", value.len(), limits.value_bytes_max)?;
                    for patch in patches {
                        check_patch(patch, key, value, n_counters_before)?;
                    }
                }
                Op::Delete { key } => limit("key length", "key_bytes_max", key.len(), limits.key_bytes_max)?,
                Op::Add { key, .. } => {
                    limit("key length", "key_bytes_max", key.len(), limits.key_bytes_max)?;
                    n_counters_before += 1;
                }
                Op::BlobAcquire(..) | Op::BlobRelease(_) => {}
            }
        }
        Ok(())
    }
}

fn check_patch(patch: &Patch, key: &[u8], value: &[u8], n_counters_before: usize) -> Result<(), Error> {
    if patch.counter.0 >= n_counters_before {
        return Err(Error::InvalidBatch("a patch names a counter added after it".into()));
    }
    let len = match patch.target {
        PatchTarget::Key => key.len(),
        PatchTarget::Value => value.len(),
    };
    if patch.offset.checked_add(8).is_none_or(|end| end > len) {
        return Err(Error::InvalidBatch(format!("a patch at offset {} does not fit in {len} bytes", patch.offset)));
    }
    Ok(())
}

fn limit(what: &'static str, limit_name: &'static str, got: usize, max: usize) -> Result<(), Error> {
    if got > max {
        return Err(Error::Limit { what, limit_name, max: max as u64, got: got as u64 });
    }
    Ok(())
}

/// Applies patches to a key and value, given the values of the batch's counters so far.
pub(crate) fn apply_patches(key: &mut [u8], value: &mut [u8], patches: &[Patch], counters: &[i64]) {
    for patch in patches {
        let bytes = counters[patch.counter.0].to_be_bytes();
        let target = match patch.target {
            PatchTarget::Key => &mut *key,
            PatchTarget::Value => &mut *value,
        };
        target[patch.offset..patch.offset + 8].copy_from_slice(&bytes);
    }
}

pub(crate) fn decode_counter(key: &[u8], value: &[u8]) -> Result<i64, Error> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| Error::NotACounter { key: key.to_vec() })?;
    Ok(i64::from_be_bytes(bytes))
}
