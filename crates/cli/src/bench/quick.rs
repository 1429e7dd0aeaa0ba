//! `tactful bench` with no subcommand: a quick version of every benchmark, one after the other, and
//! one table of their headline figures beside each one's same-run reference and target. Each figure
//! is what its own bench prints at full size; quick sizes only move it, so compare like with like.

use clap::{Args, Parser};

/// One bench's arguments parsed from words, as if typed after its subcommand.
#[derive(Parser)]
struct Words<A: Args> {
    #[command(flatten)]
    args: A,
}

fn parse<A: Args>(words: &[&str]) -> anyhow::Result<A> {
    let words = std::iter::once("bench").chain(words.iter().copied());
    Ok(Words::<A>::try_parse_from(words)?.args)
}

pub async fn quick() -> anyhow::Result<()> {
    println!("A quick run of every benchmark (seconds, not minutes); each full bench has its own command.");
    super::print_fsync_probe();
    let steps: [(&str, &str); 8] = [
        ("ingest", "tactful bench ingest --seconds 3"),
        ("access", "tactful bench access --decisions 2000000 --appends 10000 --entries 100000"),
        ("requests", "tactful bench requests --events 2000 --runs 2"),
        ("serving", "tactful bench serving --customers 500 --seconds 3"),
        ("insights", "tactful bench insights --events 200000 --people 10000 --runs 1"),
        (
            "personalize",
            "tactful bench personalize --people 20000 --items 2000 --interactions 500000 --requests 2000",
        ),
        ("sign-in", "tactful bench sign-in --requests 300 --warmup 50"),
        ("forward", "tactful bench forward --rate 5000 --seconds 3 --rounds 0"),
    ];
    for (name, command) in steps {
        println!();
        println!("── {command}");
        let words: Vec<&str> = command.split_whitespace().skip(3).collect();
        let ran = match name {
            "ingest" => super::ingest(parse(&words)?).await,
            "access" => super::access(parse(&words)?).await,
            "requests" => super::requests(parse(&words)?).await,
            "serving" => super::serving(parse(&words)?).await,
            "insights" => super::insights(parse(&words)?).await,
            "personalize" => {
                let args = parse(&words)?;
                tokio::task::spawn_blocking(move || super::personalize(args)).await?
            }
            "sign-in" => super::sign_in(parse(&words)?).await,
            _ => super::forward(parse(&words)?).await,
        };
        if let Err(error) = ran {
            println!("{name}: failed: {error:#}");
        }
    }
    println!();
    println!("| figure | value | same-run reference | target |");
    println!("|---|---:|---:|---|");
    for row in super::take_rows() {
        println!("| {} | {} | {} | {} |", row.figure, row.value, row.reference, row.target);
    }
    Ok(())
}
