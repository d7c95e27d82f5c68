//! Deterministic answer ordering: a tiny seeded PRNG, a shuffle, and RFC 2782 weighted order.
//!
//! Contract: every function here is a pure function of its inputs and the seed; the same seed
//! and input always give the same order, so tests are reproducible. Nothing here reads a clock
//! or an OS random source (the server supplies a fresh seed per query).

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and good enough to shuffle answers.
/// Not cryptographic, and it does not need to be.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough value in `0..n` (Lemire's multiply-shift; bias < n / 2^64).
    /// Returns 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Fisher–Yates shuffle driven by `rng`.
pub fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
}

/// Orders `items` (all of one priority) by RFC 2782 weighted random selection.
///
/// As the RFC prescribes: the not-yet-ordered entries are arranged with the weight-0 ones
/// first, a number `r` is drawn uniformly in `0..=sum(weights)`, and the first entry whose
/// running weight sum is `>= r` is taken next. A weight-0 entry is therefore picked only when
/// `r == 0`, so such entries end up last-ish but are not starved entirely. Entries are shuffled
/// first so that ties (and all-zero weights) are in random order.
///
/// O(n log n): the running sums live in a Fenwick tree over the initial arrangement (a taken
/// entry's weight becomes 0, which leaves the sums of the others as the RFC's list with the
/// entry removed), so each pick is a prefix-sum search instead of a rescan. The picks are
/// exactly those of the plain O(n²) algorithm for the same seed ([`rfc2782_order_naive`]
/// in the tests).
pub fn rfc2782_order<T>(items: Vec<(u16, T)>, rng: &mut Rng) -> Vec<T> {
    let mut pool = items;
    shuffle(&mut pool, rng);
    // Stable partition: weight 0 first, the shuffled order is otherwise kept.
    let (mut zeros, rest): (Vec<_>, Vec<_>) = pool.into_iter().partition(|(w, _)| *w == 0);
    zeros.extend(rest);
    let n = zeros.len();
    let weights: Vec<u64> = zeros.iter().map(|(w, _)| u64::from(*w)).collect();
    let mut slots: Vec<Option<T>> = zeros.into_iter().map(|(_, item)| Some(item)).collect();
    let mut tree = Fenwick::new(&weights);
    let mut total: u64 = weights.iter().sum();
    let mut first = 0; // every entry before `first` is taken
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        while slots.get(first).is_some_and(Option::is_none) {
            first += 1;
        }
        let r = rng.below(total + 1);
        // r == 0 takes the first remaining entry (its running sum, >= 0, is the first >= r);
        // otherwise the first position whose prefix sum reaches r, necessarily a remaining
        // entry of positive weight.
        let pick = if r == 0 { first } else { tree.lower_bound(r).unwrap_or(first) };
        if let Some(item) = slots.get_mut(pick).and_then(Option::take) {
            let w = weights[pick];
            tree.sub(pick, w);
            total -= w;
            out.push(item);
        }
    }
    out
}

/// A Fenwick (binary indexed) tree of non-negative weights: prefix sums and their search in
/// O(log n).
struct Fenwick {
    tree: Vec<u64>,
}

impl Fenwick {
    fn new(weights: &[u64]) -> Self {
        let mut tree = vec![0u64; weights.len() + 1];
        tree[1..].copy_from_slice(weights);
        for j in 1..tree.len() {
            let parent = j + (j & j.wrapping_neg());
            if parent < tree.len() {
                tree[parent] += tree[j];
            }
        }
        Fenwick { tree }
    }

    /// Subtracts `w` from the weight at `i` (0-based).
    fn sub(&mut self, i: usize, w: u64) {
        let mut j = i + 1;
        while let Some(node) = self.tree.get_mut(j) {
            *node -= w;
            j += j & j.wrapping_neg();
        }
    }

    /// The smallest 0-based index whose prefix sum (inclusive) is `>= target` (`target >= 1`).
    fn lower_bound(&self, target: u64) -> Option<usize> {
        let n = self.tree.len() - 1;
        let mut pos = 0;
        let mut rem = target;
        let mut step = n.checked_ilog2().map_or(0, |b| 1usize << b);
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] < rem {
                pos = next;
                rem -= self.tree[next];
            }
            step >>= 1;
        }
        (pos < n).then_some(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC's algorithm as written (O(n²)): the reference for [`rfc2782_order`].
    fn rfc2782_order_naive<T>(items: Vec<(u16, T)>, rng: &mut Rng) -> Vec<T> {
        let mut pool = items;
        shuffle(&mut pool, rng);
        let (mut zeros, rest): (Vec<_>, Vec<_>) = pool.into_iter().partition(|(w, _)| *w == 0);
        zeros.extend(rest);
        let mut pool = zeros;
        let mut out = Vec::with_capacity(pool.len());
        while !pool.is_empty() {
            let total: u64 = pool.iter().map(|(w, _)| u64::from(*w)).sum();
            let r = rng.below(total + 1);
            let mut running = 0u64;
            let mut pick = pool.len() - 1;
            for (i, (w, _)) in pool.iter().enumerate() {
                running += u64::from(*w);
                if running >= r {
                    pick = i;
                    break;
                }
            }
            let (_, item) = pool.remove(pick);
            out.push(item);
        }
        out
    }

    #[test]
    fn fast_weighted_order_is_the_naive_one() {
        let mut draws = Rng::new(2026);
        for case in 0..2000u64 {
            let n = draws.below(40) as usize;
            let max_weight = [1, 2, 10, 65535][case as usize % 4];
            let items: Vec<(u16, usize)> = (0..n).map(|i| (draws.below(max_weight + 1) as u16, i)).collect();
            let seed = draws.next_u64();
            assert_eq!(
                rfc2782_order(items.clone(), &mut Rng::new(seed)),
                rfc2782_order_naive(items, &mut Rng::new(seed)),
                "case {case} seed {seed}"
            );
        }
    }

    #[test]
    fn rng_is_deterministic() {
        let a: Vec<u64> = (0..4).scan(Rng::new(7), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..4).scan(Rng::new(7), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
        assert_eq!(Rng::new(1).below(0), 0);
        let mut r = Rng::new(3);
        assert!((0..1000).all(|_| r.below(10) < 10));
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u32> = (0..50).collect();
        shuffle(&mut v, &mut Rng::new(42));
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted, "seed 42 should move something");
    }

    #[test]
    fn weighted_order_is_deterministic_per_seed() {
        let items = || (0..20u16).map(|i| (i * 3, i)).collect::<Vec<_>>();
        for seed in 0..50 {
            assert_eq!(
                rfc2782_order(items(), &mut Rng::new(seed)),
                rfc2782_order(items(), &mut Rng::new(seed)),
                "seed {seed}"
            );
        }
        let mut out = rfc2782_order(items(), &mut Rng::new(1));
        out.sort_unstable();
        assert_eq!(out, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn weighted_order_respects_weights() {
        // Weights 1 and 9: by the RFC algorithm the heavy entry comes first with probability
        // (9/11 + 10/11) / 2 ≈ 0.864 (the two shuffled starting arrangements are equally likely).
        let trials = 20_000u64;
        let heavy_first = (0..trials).filter(|&s| rfc2782_order(vec![(1, 'a'), (9, 'b')], &mut Rng::new(s))[0] == 'b');
        let share = heavy_first.count() as f64 / trials as f64;
        assert!((0.83..0.90).contains(&share), "heavy-first share {share}");

        // A weight-0 entry competes with weight 10 and is picked first only when r == 0.
        let zero_first =
            (0..trials).filter(|&s| rfc2782_order(vec![(0, 'z'), (10, 'x')], &mut Rng::new(s))[0] == 'z').count();
        let share = zero_first as f64 / trials as f64;
        assert!((0.06..0.13).contains(&share), "zero-first share {share}");

        // All-zero weights still produce every entry.
        let out = rfc2782_order(vec![(0, 1), (0, 2), (0, 3)], &mut Rng::new(9));
        assert_eq!(out.len(), 3);
    }
}
