//! Prints the CID of each file (only-hash import), for benchmarks:
//! `cargo run --release -p keel-content --example cid -- [--profile NAME] FILE...`
//! Hashing uses one thread per CPU the process may run on; bound it with `taskset`.

use std::io::Write;

fn main() -> Result<(), keel_content::Error> {
    let mut args = std::env::args().skip(1).peekable();
    let mut opts = keel_content::ImportOptions::default();
    if args.peek().map(String::as_str) == Some("--profile") {
        args.next();
        opts = keel_content::ImportOptions::profile(&args.next().unwrap_or_default())?;
    }
    let mut out = std::io::stdout().lock();
    for f in args {
        let cid = keel_content::cid_of_file(std::path::Path::new(&f), &opts)?;
        writeln!(out, "{cid}  {f}")?;
    }
    Ok(())
}
