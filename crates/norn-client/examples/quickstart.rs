//! The README's example: connect with the client config `make cluster`
//! writes, write a key, read it back, then resolve siblings.
//!
//! `cargo run --example quickstart -- cluster/client.toml`

use norn_client::{Client, ClientOptions, QuorumOptions, Sibling};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "cluster/client.toml".into());
    let client = Client::connect(ClientOptions::from_config_file(&config)?).await?;

    let written = client
        .put(
            "carts",
            "alice",
            b"milk".to_vec(),
            None,
            QuorumOptions::default(),
        )
        .await?;
    println!("written: {} replicas acknowledged", written.receipt.acked());

    // Two writers that read the same version create siblings...
    let read = client
        .get("carts", "alice", QuorumOptions::default())
        .await?;
    client
        .put(
            "carts",
            "alice",
            b"milk,eggs".to_vec(),
            Some(read.context.clone()),
            QuorumOptions::default(),
        )
        .await?;
    client
        .put(
            "carts",
            "alice",
            b"milk,bread".to_vec(),
            Some(read.context),
            QuorumOptions::default(),
        )
        .await?;
    let both = client
        .get("carts", "alice", QuorumOptions::default())
        .await?;
    println!("siblings: {}", both.siblings.len());

    // ...which a write with the merged context resolves.
    client
        .put(
            "carts",
            "alice",
            b"milk,eggs,bread".to_vec(),
            Some(both.context),
            QuorumOptions::default(),
        )
        .await?;
    let merged = client
        .get("carts", "alice", QuorumOptions::default())
        .await?;
    for sibling in &merged.siblings {
        if let Sibling::Value(value) = sibling {
            println!("value: {}", String::from_utf8_lossy(value));
        }
    }
    assert_eq!(merged.siblings.len(), 1);
    Ok(())
}
