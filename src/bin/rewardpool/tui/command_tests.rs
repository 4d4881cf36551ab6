//! Every command, and every way its arguments can be wrong.

use super::*;

fn err(line: &str) -> String {
    parse(line).expect_err(line).to_string()
}

#[test]
fn every_command_parses() {
    assert_eq!(parse("h"), Ok(Command::Help));
    assert_eq!(parse("help"), Ok(Command::Help));
    assert_eq!(parse("s"), Ok(Command::State));
    assert_eq!(parse("d"), Ok(Command::Draw { count: 1 }));
    assert_eq!(parse("  d   10 "), Ok(Command::Draw { count: 10 }));
    assert_eq!(parse("d 10000"), Ok(Command::Draw { count: DRAWS_MAX }));
    assert_eq!(parse("p 1000"), Ok(Command::Pull { count: PULL_MAX }));
    assert_eq!(parse("p 1"), Ok(Command::Pull { count: 1 }));
    assert_eq!(
        parse("key 000102030405060708090a0B0c0D0e0F 5"),
        Ok(Command::KeyedPull { key: std::array::from_fn(|i| i as u8), count: 5 })
    );
    assert_eq!(
        parse("u gold 5 20"),
        Ok(Command::Update { item: "gold".to_owned(), quantity: 5, weight: 20 })
    );
    assert_eq!(
        parse("u coin -1 0"),
        Ok(Command::Update { item: "coin".to_owned(), quantity: -1, weight: 0 })
    );
    assert_eq!(
        parse("u coin unlimited 4294967295"),
        Ok(Command::Update { item: "coin".to_owned(), quantity: -1, weight: u32::MAX })
    );
    assert_eq!(parse("pool eu-1"), Ok(Command::Pool { name: "eu-1".to_owned() }));
    assert_eq!(parse("r"), Ok(Command::Reload));
    assert_eq!(parse("q"), Ok(Command::Quit));
    assert_eq!(parse("quit"), Ok(Command::Quit));
}

#[test]
fn blank_and_unknown_lines() {
    assert_eq!(parse(""), Err(CommandError::Empty));
    assert_eq!(err("   "), "no command (h for help)");
    assert_eq!(err("draw 5"), "unknown command \"draw\" (h for help)");
    assert_eq!(err("D"), "unknown command \"D\" (h for help)");
}

#[test]
fn bad_counts() {
    assert_eq!(err("d 0"), "d [n]: \"0\" is not a count from 1 to 10000");
    assert_eq!(err("d 10001"), "d [n]: \"10001\" is not a count from 1 to 10000");
    assert_eq!(err("d -3"), "d [n]: \"-3\" is not a count from 1 to 10000");
    assert_eq!(err("d ten"), "d [n]: \"ten\" is not a count from 1 to 10000");
    assert_eq!(
        err("d 99999999999999999999"),
        "d [n]: \"99999999999999999999\" is not a count from 1 to 10000"
    );
    assert_eq!(err("d 1 2"), "d [n]: unexpected \"2\"");
    assert_eq!(err("p"), "p <n>: missing the count");
    assert_eq!(err("p 0"), "p <n>: \"0\" is not a count from 1 to 1000");
    assert_eq!(err("p 1001"), "p <n>: \"1001\" is not a count from 1 to 1000");
    assert_eq!(err("p 1.5"), "p <n>: \"1.5\" is not a count from 1 to 1000");
    assert_eq!(err("p 3 x"), "p <n>: unexpected \"x\"");
}

#[test]
fn bad_keys() {
    let key = "00112233445566778899aabbccddeeff";
    assert_eq!(err("key"), "key <hex> <n>: missing the key (32 hex digits)");
    assert_eq!(err(&format!("key {key}")), "key <hex> <n>: missing the count");
    assert_eq!(err("key abc 1"), "key <hex> <n>: \"abc\" is not 32 hex digits");
    let long = format!("{key}00");
    assert_eq!(
        err(&format!("key {long} 1")),
        format!("key <hex> <n>: {long:?} is not 32 hex digits")
    );
    let bad = "00112233445566778899aabbccddeefg";
    assert_eq!(
        err(&format!("key {bad} 1")),
        format!("key <hex> <n>: {bad:?} is not 32 hex digits")
    );
    // 32 bytes but not 32 ASCII digits: no panic on a char boundary.
    let wide = "é".repeat(16);
    assert_eq!(
        err(&format!("key {wide} 1")),
        format!("key <hex> <n>: {wide:?} is not 32 hex digits")
    );
    let plus = "+0112233445566778899aabbccddeeff";
    assert!(parse(&format!("key {plus} 1")).is_err(), "a sign is not a digit");
    assert_eq!(err(&format!("key {key} 0")), "key <hex> <n>: \"0\" is not a count from 1 to 1000");
    assert_eq!(err(&format!("key {key} 1 1")), "key <hex> <n>: unexpected \"1\"");
}

#[test]
fn bad_updates() {
    let usage = "u <item> <qty> <weight>";
    assert_eq!(err("u"), format!("{usage}: missing the item"));
    assert_eq!(err("u gold"), format!("{usage}: missing the quantity"));
    assert_eq!(err("u gold 5"), format!("{usage}: missing the weight"));
    let qty = "is not a quantity from 0 to 2147483647, or -1 (unlimited)";
    assert_eq!(err("u gold -2 5"), format!("{usage}: \"-2\" {qty}"));
    assert_eq!(err("u gold 2147483648 5"), format!("{usage}: \"2147483648\" {qty}"));
    assert_eq!(err("u gold five 5"), format!("{usage}: \"five\" {qty}"));
    let weight = "is not a weight from 0 to 4294967295";
    assert_eq!(err("u gold 5 -1"), format!("{usage}: \"-1\" {weight}"));
    assert_eq!(err("u gold 5 4294967296"), format!("{usage}: \"4294967296\" {weight}"));
    assert_eq!(err("u gold 5 20 7"), format!("{usage}: unexpected \"7\""));
}

#[test]
fn bad_pools_and_bare_commands() {
    assert_eq!(err("pool"), "pool <name>: missing the pool's name");
    assert_eq!(err("pool a b"), "pool <name>: unexpected \"b\"");
    assert_eq!(err("q now"), "q: unexpected \"now\"");
    assert_eq!(err("h me"), "h: unexpected \"me\"");
    assert_eq!(err("s x"), "s: unexpected \"x\"");
    assert_eq!(err("r x"), "r: unexpected \"x\"");
}
