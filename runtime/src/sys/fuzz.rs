//! Inputs for the decoder tests (test builds only): random bytes, and valid encodings
//! mutated the ways a corrupted stream or a hostile peer mutates them (flipped bits, cut
//! or spliced runs, length fields set to their extremes). Seeded: each test prints its seed,
//! and `FUZZ_SEED=n` replays it; `FUZZ_ITERS=n` runs longer than the default.

/// A seeded source of test inputs (xorshift64*).
pub(crate) struct Inputs(u64);

/// Inputs per decoder in a normal test run: enough to reach every error path of these small
/// decoders many times over, in well under a second each.
const DEFAULT_ITERS: usize = 20_000;

impl Inputs {
    pub(crate) fn new(what: &str) -> Inputs {
        let seed = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("fuzz {what}: FUZZ_SEED={seed}");
        Inputs(seed.max(1))
    }

    /// How many inputs each decoder gets.
    pub(crate) fn iterations() -> usize {
        std::env::var("FUZZ_ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_ITERS)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Up to `max` random bytes.
    pub(crate) fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// `valid`, changed in one to four places.
    pub(crate) fn mutate(&mut self, valid: &[u8]) -> Vec<u8> {
        let mut v = valid.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(v.len());
            match self.below(8) {
                0 if !v.is_empty() => v[at] ^= 1 << self.below(8),
                1 if !v.is_empty() => v[at] = [0, 0xff, 0x7f, 0x80][self.below(4)],
                2 if !v.is_empty() => v[at] = self.next() as u8,
                3 => v.truncate(at),
                4 => {
                    let extra = self.bytes(16);
                    v.splice(at..at, extra);
                }
                5 => {
                    let end = (at + 1 + self.below(16)).min(v.len());
                    v.drain(at..end);
                }
                // A length field (any aligned or unaligned u32/u64) set to an extreme.
                6 if v.len() >= at + 4 => {
                    let x: u32 =
                        [0, 1, u32::MAX, i32::MAX as u32, v.len() as u32 + 1][self.below(5)];
                    v[at..at + 4].copy_from_slice(&x.to_le_bytes());
                }
                7 if v.len() >= at + 8 => {
                    let x: u64 = [0, u64::MAX, 1 << 40, v.len() as u64][self.below(4)];
                    v[at..at + 8].copy_from_slice(&x.to_le_bytes());
                }
                _ => {
                    // Splice a run of itself elsewhere (duplicated fields, replays).
                    let end = (at + 1 + self.below(32)).min(v.len());
                    let run = v[at..end].to_vec();
                    let to = self.below(v.len() + 1);
                    v.splice(to..to, run);
                }
            }
        }
        v
    }

    /// One input: most often a mutation of one of `seeds`, sometimes a seed as it is or
    /// random bytes.
    pub(crate) fn input(&mut self, seeds: &[Vec<u8>]) -> Vec<u8> {
        let seed = &seeds[self.below(seeds.len())];
        match self.below(10) {
            0 => seed.clone(),
            1 => self.bytes(2 * seed.len() + 16),
            _ => self.mutate(seed),
        }
    }
}
