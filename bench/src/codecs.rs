//! `--codecs`: the wire codec against the candidates it was chosen over, on what the library
//! sends in each scenario, in one run, interleaved round by round. "multiproc" is the codec
//! the library uses (serde-wincode, bincode 1's layout), called the way `wire::serial` calls
//! it; the peers are bincode 1.3 (the codec it replaced, unmaintained), postcard and
//! rmp-serde. Each figure is one encode plus one decode of the scenario's payload, in ns.
//! The measured evaluation with the criteria behind the choice is bench/CODECS.md.

use std::hint::black_box;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::Bench;

type Cfg = wincode::config::Configuration<true, { usize::MAX }>;

/// One codec: append an encoding to a buffer, decode a whole value from a slice.
trait Codec {
    const NAME: &'static str;
    fn encode_into<T: Serialize>(out: &mut Vec<u8>, v: &T);
    fn decode<T: DeserializeOwned>(b: &[u8]) -> T;
}

struct Wincode;
impl Codec for Wincode {
    const NAME: &'static str = "multiproc";
    fn encode_into<T: Serialize>(out: &mut Vec<u8>, v: &T) {
        v.serialize(serde_wincode::Serializer::<_, Cfg>::new(out))
            .expect("encode");
    }
    fn decode<T: DeserializeOwned>(b: &[u8]) -> T {
        T::deserialize(serde_wincode::Deserializer::<_, Cfg>::new(b)).expect("decode")
    }
}

struct Bincode1;
impl Codec for Bincode1 {
    const NAME: &'static str = "bincode 1.3";
    fn encode_into<T: Serialize>(out: &mut Vec<u8>, v: &T) {
        bincode::serialize_into(out, v).expect("encode");
    }
    fn decode<T: DeserializeOwned>(b: &[u8]) -> T {
        bincode::deserialize(b).expect("decode")
    }
}

struct Postcard;
impl Codec for Postcard {
    const NAME: &'static str = "postcard";
    fn encode_into<T: Serialize>(out: &mut Vec<u8>, v: &T) {
        postcard::to_io(v, out).expect("encode");
    }
    fn decode<T: DeserializeOwned>(b: &[u8]) -> T {
        postcard::from_bytes(b).expect("decode")
    }
}

struct Rmp;
impl Codec for Rmp {
    const NAME: &'static str = "rmp-serde";
    fn encode_into<T: Serialize>(out: &mut Vec<u8>, v: &T) {
        rmp_serde::encode::write(out, v).expect("encode");
    }
    fn decode<T: DeserializeOwned>(b: &[u8]) -> T {
        rmp_serde::from_slice(b).expect("decode")
    }
}

/// A typical pipe message or task argument with some structure.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Record {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: f64,
    parent: Option<u32>,
}

fn record(i: u64) -> Record {
    Record {
        id: i,
        name: format!("item-{i}"),
        tags: vec!["alpha".into(), "beta".into(), "gamma".into()],
        score: i as f64 * 0.5,
        parent: Some(i as u32 / 2),
    }
}

/// Median ns of `f` over `reps` calls, after a warm-up call, per call.
fn time(reps: u32, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() * 1e9 / f64::from(reps)
}

/// Every scenario for one codec, one measurement each.
fn run<C: Codec>(bench: &mut Bench, big: &ByteBuf) {
    let mut buf = Vec::with_capacity(64 << 10);
    // map, chunk of 1000: the parent encodes the chunk's arguments, the worker decodes them
    // and encodes the results, the parent decodes the results.
    let chunk: Vec<(u64,)> = (0..1000u64).map(|i| (i * 7919,)).collect();
    let mut results = Vec::with_capacity(16 * 1000);
    let ns = time(200, || {
        buf.clear();
        C::encode_into(&mut buf, &chunk);
        let args: Vec<(u64,)> = C::decode(&buf);
        let squares: Vec<u64> = args.iter().map(|(x,)| x.wrapping_mul(*x)).collect();
        results.clear();
        C::encode_into(&mut results, &squares);
        black_box(C::decode::<Vec<u64>>(&results));
    });
    bench.record(
        "codec: map chunk, 1000 (u64,) args + results, per item (ns)",
        C::NAME,
        Some(ns / 1000.0),
    );
    // apply: an argument tuple and its result.
    let ns = time(100_000, || {
        buf.clear();
        C::encode_into(&mut buf, &(black_box(17i64), black_box(25i64)));
        let (a, b): (i64, i64) = C::decode(&buf);
        buf.clear();
        C::encode_into(&mut buf, &(a + b));
        black_box(C::decode::<i64>(&buf));
    });
    bench.record(
        "codec: apply, (i64, i64) -> i64 round trip (ns)",
        C::NAME,
        Some(ns),
    );
    // queue, small item.
    let ns = time(200_000, || {
        buf.clear();
        C::encode_into(&mut buf, &black_box(123_456_789u64));
        black_box(C::decode::<u64>(&buf));
    });
    bench.record(
        "codec: queue small item, u64 put + get (ns)",
        C::NAME,
        Some(ns),
    );
    // queue, 1 MiB bytes.
    let mut out = Vec::with_capacity(big.len() + 16);
    let ns = time(200, || {
        out.clear();
        C::encode_into(&mut out, big);
        black_box(C::decode::<ByteBuf>(&out));
    });
    bench.record(
        "codec: queue 1 MiB ByteBuf put + get (ns)",
        C::NAME,
        Some(ns),
    );
    // pipe, a structured message.
    let r = record(42);
    let ns = time(50_000, || {
        buf.clear();
        C::encode_into(&mut buf, black_box(&r));
        black_box(C::decode::<Record>(&buf));
    });
    bench.record(
        "codec: pipe message, a 5-field struct send + recv (ns)",
        C::NAME,
        Some(ns),
    );
}

/// Checks every codec decodes what it encoded (a benchmark of a broken codec means nothing),
/// then one round of every scenario for each.
pub fn round(bench: &mut Bench) {
    let big = ByteBuf::from(vec![7u8; 1 << 20]);
    fn check<C: Codec>() {
        let r = record(9);
        let mut b = Vec::new();
        C::encode_into(&mut b, &r);
        assert_eq!(
            C::decode::<Record>(&b),
            r,
            "{} does not round-trip",
            C::NAME
        );
    }
    check::<Wincode>();
    check::<Bincode1>();
    check::<Postcard>();
    check::<Rmp>();
    run::<Wincode>(bench, &big);
    run::<Bincode1>(bench, &big);
    run::<Postcard>(bench, &big);
    run::<Rmp>(bench, &big);
}
