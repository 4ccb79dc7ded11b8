//! Criterion benchmarks of the subscription trie: matching one topic
//! against 100,000 subscriptions (exact filters, `+` and `#` filters), with
//! and without per-subscriber merging, and subscribe/unsubscribe churn.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use warden::router::{MergedMatch, SubOptions, SubscriptionTrie};

const SUBSCRIPTIONS: usize = 100_000;

/// 100k subscriptions shaped like a fleet: one exact filter per device
/// (`site/S/dev/D/telemetry`), a `+` filter per site
/// (`site/S/dev/+/telemetry`), a `#` filter per site (`site/S/#`), and a
/// few global wildcards.
fn fleet() -> SubscriptionTrie<Arc<str>> {
    let mut trie = SubscriptionTrie::new();
    let opts = SubOptions {
        qos: 1,
        ..SubOptions::default()
    };
    let sites = 1_000;
    let mut n = 0;
    'outer: for site in 0..sites {
        let key: Arc<str> = Arc::from(format!("site-{site}-plus"));
        trie.subscribe(&format!("site/{site}/dev/+/telemetry"), None, key, opts);
        let key: Arc<str> = Arc::from(format!("site-{site}-hash"));
        trie.subscribe(&format!("site/{site}/#"), None, key, opts);
        n += 2;
        for dev in 0..((SUBSCRIPTIONS / sites) - 2) {
            if n >= SUBSCRIPTIONS - 3 {
                break 'outer;
            }
            let key: Arc<str> = Arc::from(format!("dev-{site}-{dev}"));
            trie.subscribe(&format!("site/{site}/dev/{dev}/telemetry"), None, key, opts);
            n += 1;
        }
    }
    for (i, f) in ["#", "+/+/dev/+/telemetry", "site/+/dev/7/+"]
        .iter()
        .enumerate()
    {
        trie.subscribe(f, None, Arc::from(format!("global-{i}")), opts);
    }
    trie
}

fn matching(c: &mut Criterion) {
    let trie = fleet();
    // The shape the numbers are about: exact, the site's `+` and `#`, and
    // two global wildcards match.
    assert_eq!(trie.len(), SUBSCRIPTIONS);
    let mut hits = 0usize;
    trie.matches("site/517/dev/42/telemetry", |_, _, _| hits += 1);
    assert_eq!(hits, 5);
    let mut group = c.benchmark_group("trie_100k");
    group.throughput(Throughput::Elements(1));
    group.bench_function("matches/hit", |b| {
        b.iter(|| {
            let mut n = 0usize;
            trie.matches(black_box("site/517/dev/42/telemetry"), |_, _, _| n += 1);
            black_box(n)
        })
    });
    group.bench_function("matches/global_wildcards_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            trie.matches(black_box("other/517/dev/42/telemetry"), |_, _, _| n += 1);
            black_box(n)
        })
    });
    let mut out: Vec<(Arc<str>, MergedMatch)> = Vec::with_capacity(16);
    group.bench_function("matches_merged/hit", |b| {
        b.iter(|| {
            out.clear();
            trie.matches_merged(black_box("site/517/dev/42/telemetry"), None, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn churn(c: &mut Criterion) {
    let mut trie = fleet();
    let key: Arc<str> = Arc::from("churner");
    c.bench_function("trie_100k/subscribe_unsubscribe", |b| {
        b.iter_batched(
            || key.clone(),
            |k| {
                trie.subscribe(
                    "site/9/dev/new/telemetry",
                    None,
                    k.clone(),
                    SubOptions::default(),
                );
                black_box(trie.unsubscribe("site/9/dev/new/telemetry", None, &k))
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, matching, churn);
criterion_main!(benches);
