//! One module per command family.

pub(crate) mod alerts;
pub(crate) mod content;
pub(crate) mod evidence;
pub(crate) mod status;
pub(crate) mod terminal;
pub(crate) mod trust;
pub(crate) mod up;

/// Exit code of a runtime failure.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code of an invalid command line or config (clap uses it for usage errors too).
pub(crate) const EXIT_CONFIG: u8 = 2;
/// Exit code of `keel status` when the node answers but is not ready.
pub(crate) const EXIT_NOT_READY: u8 = 3;

/// Prints a line for the user on stdout.
#[allow(clippy::print_stdout)]
pub(crate) fn say(line: &str) {
    println!("{line}");
}

/// Prints a line for the user on stderr.
#[allow(clippy::print_stderr)]
pub(crate) fn complain(line: &str) {
    eprintln!("{line}");
}

/// Renders rows (the first is the header) as left-aligned columns, without trailing blanks.
pub(crate) fn table(rows: Vec<Vec<String>>) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.trim_end().to_owned()
}
