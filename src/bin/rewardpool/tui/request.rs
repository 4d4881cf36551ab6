//! Commands into the service's requests, and its answers into log lines: the pure halves
//! of the gRPC client the terminal loop will drive (`Draw`, `Update`).

use std::collections::BTreeMap;

use super::command::Command;
use crate::service::proto::{DrawRequest, DrawResponse, UpdateRequest, UpdateResponse};

/// What one command asks of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// Requests on one `Draw` stream, in order (`d n`: n requests of one draw; `p n` and
    /// `key`: one request of n).
    Draw(Vec<DrawRequest>),
    /// One `Update`.
    Update(UpdateRequest),
    /// Reconnect (or recover the data directory): the loop's own business.
    Reload,
}

/// The server call for `command` on pool `pool`; `None` for the commands the dashboard does
/// itself (help, state, pool, quit: see `keys::apply_line`).
pub(crate) fn call(command: &Command, pool: &str) -> Option<Call> {
    let draw = |count: u32, key: Vec<u8>| DrawRequest {
        count: i32::try_from(count).unwrap_or(i32::MAX),
        pool: pool.to_owned(),
        idempotency_key: key,
    };
    match command {
        Command::Draw { count } => {
            Some(Call::Draw((0..*count).map(|_| draw(1, Vec::new())).collect()))
        }
        Command::Pull { count } => Some(Call::Draw(vec![draw(*count, Vec::new())])),
        Command::KeyedPull { key, count } => Some(Call::Draw(vec![draw(*count, key.to_vec())])),
        Command::Update { item, quantity, weight } => Some(Call::Update(UpdateRequest {
            pool: pool.to_owned(),
            item_id: item.clone(),
            quantity: Some(*quantity),
            weight: Some(i64::from(*weight)),
        })),
        Command::Reload => Some(Call::Reload),
        Command::Help | Command::State | Command::Pool { .. } | Command::Quit => None,
    }
}

/// One log line for the answers to a draw command: how many of each item (most first,
/// then by id), empty draws, replayed outcomes, and the newest request id.
pub(crate) fn draws_line(responses: &[DrawResponse]) -> String {
    let mut items: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut empty, mut replayed, mut newest) = (0u64, 0u64, 0u64);
    for r in responses {
        if r.item_id.is_empty() {
            empty += 1;
        } else {
            *items.entry(r.item_id.as_str()).or_default() += 1;
        }
        replayed += u64::from(r.replayed);
        newest = newest.max(r.request_id);
    }
    let mut counted: Vec<(&str, u64)> = items.into_iter().collect();
    counted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut parts: Vec<String> = counted.iter().map(|(id, n)| format!("{id} x{n}")).collect();
    if empty > 0 {
        parts.push(format!("empty x{empty}"));
    }
    let mut line = format!("drew {}", responses.len());
    if !parts.is_empty() {
        line.push_str(": ");
        line.push_str(&parts.join(", "));
    }
    if replayed > 0 {
        line.push_str(&format!(" ({replayed} replayed)"));
    }
    if newest > 0 {
        line.push_str(&format!(" · id {newest}"));
    }
    line
}

/// One log line for an `Update`'s answer.
pub(crate) fn update_line(response: &UpdateResponse) -> String {
    match &response.item {
        None => "updated (no item in the answer)".to_owned(),
        Some(item) => {
            let stock = match item.quantity {
                q if q < 0 => "unlimited".to_owned(),
                q => q.to_string(),
            };
            format!(
                "updated {}: stock {stock}, weight {}, odds {:.4}",
                item.item_id, item.probability, item.odds
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::proto::RewardItem;

    fn answer(id: u64, item: &str, replayed: bool) -> DrawResponse {
        DrawResponse { request_id: id, item_id: item.to_owned(), error: String::new(), replayed }
    }

    #[test]
    fn commands_become_calls() {
        let Some(Call::Draw(requests)) = call(&Command::Draw { count: 3 }, "eu") else {
            panic!("d 3 is a draw call");
        };
        assert_eq!(requests.len(), 3);
        assert!(requests
            .iter()
            .all(|r| r.count == 1 && r.pool == "eu" && r.idempotency_key.is_empty()));
        assert_eq!(
            call(&Command::Pull { count: 10 }, ""),
            Some(Call::Draw(vec![DrawRequest {
                count: 10,
                pool: String::new(),
                idempotency_key: vec![]
            }]))
        );
        let key = [7u8; 16];
        let Some(Call::Draw(keyed)) = call(&Command::KeyedPull { key, count: 2 }, "a") else {
            panic!("key is a draw call");
        };
        assert_eq!(
            (keyed.len(), keyed[0].count, keyed[0].idempotency_key.as_slice()),
            (1, 2, &key[..])
        );
        let update = Command::Update { item: "gold".into(), quantity: -1, weight: 20 };
        assert_eq!(
            call(&update, "a"),
            Some(Call::Update(UpdateRequest {
                pool: "a".into(),
                item_id: "gold".into(),
                quantity: Some(-1),
                weight: Some(20)
            }))
        );
        assert_eq!(call(&Command::Reload, "a"), Some(Call::Reload));
        for local in
            [Command::Help, Command::State, Command::Quit, Command::Pool { name: "b".into() }]
        {
            assert_eq!(call(&local, "a"), None, "{local:?}");
        }
    }

    #[test]
    fn answers_become_log_lines() {
        let answers = [
            answer(5, "coin", false),
            answer(6, "gold", false),
            answer(7, "coin", false),
            answer(8, "", false),
        ];
        assert_eq!(draws_line(&answers), "drew 4: coin x2, gold x1, empty x1 · id 8");
        let replayed = [answer(3, "gem", true), answer(4, "gem", true)];
        assert_eq!(draws_line(&replayed), "drew 2: gem x2 (2 replayed) · id 4");
        assert_eq!(draws_line(&[]), "drew 0");
        let item = RewardItem { item_id: "gold".into(), quantity: 5, probability: 20, odds: 0.125 };
        assert_eq!(
            update_line(&UpdateResponse { item: Some(item) }),
            "updated gold: stock 5, weight 20, odds 0.1250"
        );
        let unlimited =
            RewardItem { item_id: "coin".into(), quantity: -1, probability: 1, odds: 1.0 };
        assert_eq!(
            update_line(&UpdateResponse { item: Some(unlimited) }),
            "updated coin: stock unlimited, weight 1, odds 1.0000"
        );
        assert_eq!(update_line(&UpdateResponse { item: None }), "updated (no item in the answer)");
    }
}
