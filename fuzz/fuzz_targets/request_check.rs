//! The `request` target's check (fuzz_targets/request.rs), shared with the main crate's
//! tests (tests/it/fuzz_inputs.rs), each of which provides `super::proto` (the API's
//! messages) and `super::validate` (the service's checks).
//!
//! Input: a selector byte, then a message's bytes. Selector % 3: 0 `DrawRequest`,
//! 1 `UpdateRequest`, 2 the requests that only name a pool (`GetStateRequest`,
//! `ListCommitmentsRequest`, `WatchRequest`). Beyond "no panic": what decodes encodes to
//! bytes that decode to it; an accepted request's values are exactly what its fields say
//! (count 1 ..= the pool's maximum, the key's 16 bytes, quantity -1 or more, weight within
//! u32); a refused one breaks a stated rule and its message says so; a pool name resolves to
//! the pool of that name, or to the only pool when empty.

use prost::Message;

use super::proto::{
    DrawRequest, GetStateRequest, ListCommitmentsRequest, UpdateRequest, WatchRequest,
};
use super::validate;

/// The pool lists names resolve against: one pool (the Go form), and several.
const POOLS: [&[&str]; 2] = [&["default"], &["event", "banner", "default"]];

/// The whole check (module docs).
pub(crate) fn request(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else { return };
    match selector % 3 {
        0 => draw(bytes),
        1 => update(bytes),
        _ => named(bytes),
    }
}

/// What decodes encodes to bytes that decode to the same message.
fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
    let again = M::decode(message.encode_to_vec().as_slice())
        .unwrap_or_else(|e| panic!("{message:?} encodes to bytes that do not decode: {e}"));
    assert_eq!(&again, message, "a decoded message re-encodes to another");
}

fn pool(name: &str) {
    for names in POOLS {
        match validate::pool(names.iter().copied(), name) {
            Ok(i) if name.is_empty() => assert_eq!((i, names.len()), (0, 1), "{name:?}"),
            Ok(i) => assert_eq!(names[i], name),
            Err(e) if name.is_empty() => assert!(names.len() > 1 && e.0.contains("pools"), "{e:?}"),
            Err(e) => {
                assert!(!names.contains(&name), "{name:?} is one of {names:?}: {e:?}");
                assert!(e.0.contains("unknown pool"), "{e:?}");
            }
        }
    }
}

fn draw(bytes: &[u8]) {
    let Ok(request) = DrawRequest::decode(bytes) else { return };
    round_trip(&request);
    pool(&request.pool);
    let key_bytes = request.idempotency_key.as_slice();
    for pull_max in [1, 10, 1000] {
        match validate::draw(&request, pull_max) {
            Ok((len, key)) => {
                assert_eq!(i64::from(len), i64::from(request.count).max(1), "{request:?}");
                assert!((1..=pull_max).contains(&len), "{request:?}");
                if key_bytes.is_empty() {
                    assert_eq!(key, 0);
                } else {
                    assert_ne!(key, 0, "{request:?}");
                    assert_eq!(key.to_be_bytes().as_slice(), key_bytes);
                }
            }
            Err(e) => {
                let too_many = i64::from(request.count) > i64::from(pull_max);
                let bad_key = !key_bytes.is_empty()
                    && (key_bytes.len() != 16 || key_bytes.iter().all(|b| *b == 0));
                assert!(too_many || bad_key, "{request:?} refused: {e:?}");
                let said = if too_many { "count" } else { "idempotency_key" };
                assert!(e.0.contains(said), "{request:?}: {e:?}");
            }
        }
    }
}

fn update(bytes: &[u8]) {
    let Ok(request) = UpdateRequest::decode(bytes) else { return };
    round_trip(&request);
    pool(&request.pool);
    match validate::update(&request) {
        Ok((quantity, weight)) => {
            assert!(!request.item_id.is_empty());
            let as_i64 = |q: rewardpool::Quantity| match q {
                rewardpool::Quantity::Unlimited => -1,
                rewardpool::Quantity::Finite(n) => i64::try_from(n).unwrap_or(i64::MAX),
            };
            assert_eq!(quantity.map(as_i64), request.quantity.map(i64::from), "{request:?}");
            assert_eq!(weight.map(i64::from), request.weight, "{request:?}");
        }
        Err(e) => {
            let bad_quantity = request.quantity.is_some_and(|q| q < -1);
            let bad_weight = request.weight.is_some_and(|w| u32::try_from(w).is_err());
            assert!(
                request.item_id.is_empty() || bad_quantity || bad_weight,
                "{request:?} refused: {e:?}"
            );
        }
    }
}

fn named(bytes: &[u8]) {
    if let Ok(request) = GetStateRequest::decode(bytes) {
        round_trip(&request);
        pool(&request.pool);
    }
    if let Ok(request) = ListCommitmentsRequest::decode(bytes) {
        round_trip(&request);
        pool(&request.pool);
    }
    if let Ok(request) = WatchRequest::decode(bytes) {
        round_trip(&request);
    }
}
