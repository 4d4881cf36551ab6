//! What a request must be before it reaches a pool: the checks of `Draw`'s and `Update`'s
//! fields and of the pool a request names. Pure functions over the generated messages
//! (`super::proto`) with no server state, so that the fuzz target `request` (fuzz/) compiles
//! this very file and drives it with arbitrary bytes decoded as each request message; the
//! service turns an [`Invalid`] into `INVALID_ARGUMENT` (`status::invalid`).

use rewardpool::Quantity;

use super::proto::{DrawRequest, UpdateRequest};

/// Why a request is refused: the message a client sees (it names the field and the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid(pub(crate) String);

/// A `Draw` request's draws and idempotency key (0: none), given the pool's most draws per
/// request `pull_max`.
///
/// - `count`: 0, unset or negative means one draw (the Go service's contract); more than
///   `pull_max` is refused.
/// - `idempotency_key`: empty (no key) or exactly 16 bytes, big-endian, not all zero.
pub(crate) fn draw(request: &DrawRequest, pull_max: u32) -> Result<(u32, u128), Invalid> {
    let len = u32::try_from(request.count).unwrap_or(0).max(1);
    if len > pull_max {
        return Err(Invalid(format!(
            "count {} is above the maximum of {pull_max} draws per request",
            request.count
        )));
    }
    let key = match <[u8; 16]>::try_from(request.idempotency_key.as_slice()) {
        Ok(bytes) => match u128::from_be_bytes(bytes) {
            0 => return Err(Invalid("an idempotency_key of 16 zero bytes means no key".into())),
            key => key,
        },
        Err(_) if request.idempotency_key.is_empty() => 0,
        Err(_) => {
            return Err(Invalid(format!(
                "idempotency_key must be exactly 16 bytes (or empty), got {}",
                request.idempotency_key.len()
            )))
        }
    };
    Ok((len, key))
}

/// An `Update` request's new quantity and weight (each `None`: left as it is).
///
/// - `item_id`: not empty (whether the pool has it is the engine's to say);
/// - `quantity`: -1 (unlimited) or 0 or more;
/// - `weight`: 0 to `u32::MAX`.
pub(crate) fn update(request: &UpdateRequest) -> Result<(Option<Quantity>, Option<u32>), Invalid> {
    if request.item_id.is_empty() {
        return Err(Invalid("item_id is empty".into()));
    }
    let quantity = request.quantity.map(quantity).transpose()?;
    let weight = request.weight.map(weight).transpose()?;
    Ok((quantity, weight))
}

/// `UpdateRequest.quantity`: -1 unlimited, or a count.
fn quantity(q: i32) -> Result<Quantity, Invalid> {
    match q {
        -1 => Ok(Quantity::Unlimited),
        q => u64::try_from(q).map(Quantity::Finite).map_err(|_| {
            Invalid(format!("quantity {q}: a quantity is -1 (unlimited) or 0 or more"))
        }),
    }
}

/// `UpdateRequest.weight`: 0 to `u32::MAX`.
fn weight(w: i64) -> Result<u32, Invalid> {
    u32::try_from(w).map_err(|_| Invalid(format!("weight {w}: a weight is 0 to {}", u32::MAX)))
}

/// The position in `names` (the server's pools, in order) of the pool a request names:
/// `name`, or the only pool when `name` is empty. Refusals list the pools.
pub(crate) fn pool<'a, I>(names: I, name: &str) -> Result<usize, Invalid>
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: Clone,
{
    let names = names.into_iter();
    let listed = || names.clone().collect::<Vec<_>>().join(", ");
    if name.is_empty() {
        return match names.clone().count() {
            1 => Ok(0),
            n => Err(Invalid(format!(
                "the server has {n} pools ({}): name one in the request's `pool` field",
                listed()
            ))),
        };
    }
    names.clone().position(|n| n == name).ok_or_else(|| {
        Invalid(format!("unknown pool {name:?}: the server's pools are {}", listed()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw_request(count: i32, key: &[u8]) -> DrawRequest {
        DrawRequest { count, pool: String::new(), idempotency_key: key.to_vec() }
    }

    #[test]
    fn draw_counts_and_keys() {
        assert_eq!(draw(&draw_request(0, &[]), 10), Ok((1, 0)));
        assert_eq!(draw(&draw_request(-5, &[]), 10), Ok((1, 0)));
        assert_eq!(draw(&draw_request(10, &[]), 10), Ok((10, 0)));
        let e = draw(&draw_request(11, &[]), 10).unwrap_err();
        assert!(e.0.contains("count 11 is above the maximum of 10"), "{e:?}");
        let mut key = [0_u8; 16];
        key[15] = 7;
        assert_eq!(draw(&draw_request(2, &key), 10), Ok((2, 7)));
        key[0] = 1;
        assert_eq!(draw(&draw_request(2, &key), 10), Ok((2, (1 << 120) | 7)));
        let e = draw(&draw_request(1, &[0; 16]), 10).unwrap_err();
        assert!(e.0.contains("16 zero bytes"), "{e:?}");
        let e = draw(&draw_request(1, &[1; 15]), 10).unwrap_err();
        assert!(e.0.contains("exactly 16 bytes (or empty), got 15"), "{e:?}");
    }

    #[test]
    fn update_values_are_checked() {
        let request = |quantity, weight| UpdateRequest {
            pool: String::new(),
            item_id: "gold".into(),
            quantity,
            weight,
        };
        assert_eq!(update(&request(None, None)), Ok((None, None)));
        assert_eq!(update(&request(Some(-1), Some(0))), Ok((Some(Quantity::Unlimited), Some(0))));
        assert_eq!(update(&request(Some(7), None)), Ok((Some(Quantity::Finite(7)), None)));
        assert!(update(&request(Some(-2), None)).unwrap_err().0.contains("quantity -2"));
        assert!(update(&request(None, Some(-1))).unwrap_err().0.contains("weight -1"));
        assert!(update(&request(None, Some(1 << 40))).unwrap_err().0.contains("weight 1099"));
        let mut nameless = request(None, None);
        nameless.item_id.clear();
        assert_eq!(update(&nameless), Err(Invalid("item_id is empty".into())));
    }

    #[test]
    fn pools_by_name() {
        assert_eq!(pool(["default"], ""), Ok(0));
        assert_eq!(pool(["a", "b"], "b"), Ok(1));
        let e = pool(["a", "b"], "").unwrap_err();
        assert!(e.0.contains("the server has 2 pools (a, b)"), "{e:?}");
        let e = pool(["a", "b"], "c").unwrap_err();
        assert!(e.0.contains("unknown pool \"c\": the server's pools are a, b"), "{e:?}");
    }
}
