//! `tayori forget ID…`: drops job ids' dedupe claims, so a job reusing one is
//! sent again instead of ending as a `duplicate` (docs/operations.md).

use crate::config::Config;

pub(super) async fn run(config: &Config, ids: &[String]) -> anyhow::Result<i32> {
    let q = super::dead::open(config).await?;
    let window = config.queue.dedupe_window;
    let mut conn = q.conn();
    let mut missing = 0;
    for id in ids {
        let gone: i64 = q
            .claims()
            .release(id, None, window)
            .query_async(&mut conn)
            .await?;
        if gone > 0 {
            println!("forgot {id}: its id may be used again");
        } else {
            missing += 1;
            println!("{id}: no claim (never sent, or older than queue.dedupe_window)");
        }
    }
    Ok(if missing > 0 { 1 } else { 0 })
}
