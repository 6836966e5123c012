//! argon2id (RFC 9106) on a few threads of its own, with memory that goes back to the
//! system after each computation.
//!
//! Why not `spawn_blocking` and `argon2`'s own allocation: each computation takes
//! `argon2_memory_kib` (19 MiB by default) from the allocator. glibc's malloc serves an
//! allocation that large with `mmap` only until the first one is freed; it then raises its
//! mmap threshold to that size and keeps later ones in the arena of the thread that asked,
//! and tokio's blocking pool runs them on many threads, each with an arena of its own. The
//! server's RSS grew by ~1 GB over 1,000 account creations and never came down (issue 10).
//! Here a computation runs on one of `hashing_concurrent_max` threads named
//! `hameau-argon2`, on memory mapped for it and unmapped when it ends.

use std::panic::AssertUnwindSafe;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, mpsc};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::{Semaphore, oneshot};

use crate::Error;
use crate::credentials::PasswordOptions;

/// Largest argon2 memory a stored hash may ask for, KiB: config allows raising the cost,
/// and a hash written with a higher cost must still verify; 4 GiB bounds a corrupt one.
const STORED_MEMORY_KIB_MAX: u32 = 4 * 1024 * 1024;

type Job = Box<dyn FnOnce() + Send>;

/// Runs argon2 off the async threads, at most `hashing_concurrent_max` at a time.
pub(crate) struct Hasher {
    options: PasswordOptions,
    permits: Semaphore,
    jobs: mpsc::Sender<Job>,
    /// A hash verified when the account does not exist, so that the time taken does not
    /// tell whether an address exists.
    dummy: String,
}

impl Hasher {
    pub fn new(options: PasswordOptions) -> Hasher {
        let n_threads = options.hashing_concurrent_max.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..n_threads {
            let queue = queue.clone();
            // The threads end when the last sender (this hasher) is dropped.
            std::thread::Builder::new()
                .name("hameau-argon2".into())
                .spawn(move || {
                    loop {
                        let job = queue.lock().expect("argon2 queue lock").recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawning an argon2 thread");
        }
        let dummy = hash_now(&options.argon2_params(), b"no such account").expect("argon2 hashes");
        Hasher { permits: Semaphore::new(n_threads), options, jobs, dummy }
    }

    /// Runs `work` on a hashing thread. A panic in it is an error, never a dead thread.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
        let _permit = self.permits.acquire().await.expect("never closed");
        let (done_tx, done_rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if let Ok(result) = std::panic::catch_unwind(AssertUnwindSafe(work)) {
                let _ = done_tx.send(result);
            }
        });
        self.jobs.send(job).map_err(|_| hashing_failed("the hashing threads are gone"))?;
        done_rx.await.map_err(|_| hashing_failed("the computation failed"))
    }

    pub async fn hash(&self, password: &str) -> Result<String, Error> {
        let params = self.options.argon2_params();
        let password = password.as_bytes().to_vec();
        self.run(move || hash_now(&params, &password)).await?
    }

    /// Whether `password` matches the PHC string `hash` (the dummy one if `None`).
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> bool {
        if password.len() > self.options.password_bytes_max {
            return false;
        }
        let found = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy).to_string();
        let password = password.as_bytes().to_vec();
        let matches = self.run(move || verify_now(&hash, &password)).await.unwrap_or(false);
        found && matches
    }
}

fn hashing_failed(problem: &str) -> Error {
    Error::Corrupt { key: "password".into(), problem: problem.into() }
}

/// A PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) of `password` with a new salt.
fn hash_now(params: &Params, password: &[u8]) -> Result<String, Error> {
    let salt: [u8; 16] = rand::random();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(params, password, &salt, &mut out).map_err(|e| hashing_failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| hashing_failed(&e.to_string()))?,
        salt: Some(Salt::new(&salt).map_err(|e| hashing_failed(&e.to_string()))?),
        hash: Some(Output::new(&out).map_err(|e| hashing_failed(&e.to_string()))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` hashes to the PHC string `hash`, compared in constant time.
fn verify_now(hash: &str, password: &[u8]) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else { return false };
    if phc.algorithm != Algorithm::Argon2id.ident() || phc.version.is_some_and(|v| v != u32::from(Version::V0x13)) {
        return false;
    }
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else { return false };
    let Ok(params) = Params::try_from(&phc) else { return false };
    if params.m_cost() > STORED_MEMORY_KIB_MAX {
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    if compute(&params, password, salt.as_ref(), &mut out).is_err() {
        return false;
    }
    bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

fn compute(params: &Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), String> {
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut memory = Blocks::map(params.block_count()).ok_or("cannot map argon2's memory")?;
    argon2.hash_password_into_with_memory(password, salt, out, memory.as_mut_slice()).map_err(|e| e.to_string())
}

/// argon2's working memory, mapped from the kernel for one computation and unmapped when
/// dropped, so that it never stays in an allocator's arena.
struct Blocks {
    start: NonNull<Block>,
    len: usize,
}

impl Blocks {
    fn map(len: usize) -> Option<Blocks> {
        let bytes = len.checked_mul(std::mem::size_of::<Block>()).filter(|bytes| *bytes > 0)?;
        // SAFETY: a new private anonymous mapping at an address the kernel picks; nothing
        // else refers to it. MAP_POPULATE faults it in at once rather than page by page.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return None;
        }
        // Page-aligned (above `Block`'s 64-byte alignment) and zeroed: zero is a valid Block.
        NonNull::new(address.cast::<Block>()).map(|start| Blocks { start, len })
    }

    fn as_mut_slice(&mut self) -> &mut [Block] {
        // SAFETY: `len` blocks mapped readable and writable by `map`, borrowed mutably
        // through `self` only.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl Drop for Blocks {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made by `map`; no borrow of it outlives `self`.
        unsafe {
            libc::munmap(self.start.as_ptr().cast(), self.len * std::mem::size_of::<Block>());
        }
    }
}

// SAFETY: `Blocks` owns its mapping alone, like a `Box<[Block]>`.
unsafe impl Send for Blocks {}
