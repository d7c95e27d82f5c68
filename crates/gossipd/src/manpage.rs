//! `gossipd man`: the manual page, rendered from the clap definitions (clap_mangen), so that it
//! cannot drift from `--help`. One page, `gossipd(1)`: the usual sections, then a COMMANDS
//! section with each subcommand's synopsis, description and flags (nested ones such as
//! `services register` included), then the exit status. The Debian package installs it as
//! /usr/share/man/man1/gossipd.1.gz (scripts/deb).

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

/// The page as roff.
pub fn render() -> anyhow::Result<String> {
    let mut cmd = crate::cli::Cli::command();
    cmd.build();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone()).manual("gossipd manual");
    let mut page = Vec::new();
    man.render(&mut page).context("rendering the man page")?;
    // clap_mangen names each subcommand's own page (`gossipd\-agent(1)`): this page has them
    // all, below.
    for line in String::from_utf8(page).context("the man page is not UTF-8")?.lines() {
        match line.strip_prefix("gossipd\\-").and_then(|l| l.strip_suffix("(1)")) {
            Some(sub) => writeln!(out, "\\fBgossipd {sub}\\fR")?,
            None => writeln!(out, "{line}")?,
        }
    }
    out.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_section(&mut out, sub, "gossipd")?;
    }
    out.extend_from_slice(EXIT_STATUS.as_bytes());
    String::from_utf8(out).context("the man page is not UTF-8")
}

const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success. Long-running commands (\fBagent\fR, \fBmonitor\fR, \fBwatch\fR) exit 0 when stopped with
SIGINT or SIGTERM; \fBmonitor\fR also when the agent ends the stream because it stops.
.TP
\fB1\fR
A runtime error: the agent cannot be reached or refused the request (the message names the
reason), a file is invalid, a watch handler cannot be started.
.TP
\fB2\fR
A usage error: unknown flag, missing or invalid value.
.SH "SEE ALSO"
The project's README.md, docs/OPERATIONS.md and docs/API.md (in /usr/share/doc/gossipd/ when
installed from the Debian package).
"#;

/// One subcommand as a subsection (`.SS "gossipd services register"`), then its own
/// subcommands.
fn command_section(out: &mut Vec<u8>, sub: &clap::Command, parent: &str) -> anyhow::Result<()> {
    let path = format!("{parent} {}", sub.get_name());
    let sub = sub.clone().bin_name(&path).display_name(&path);
    writeln!(out, ".SS \"{path}\"")?;
    let man = clap_mangen::Man::new(sub.clone());
    for part in [Part::Description, Part::Synopsis, Part::Options] {
        let mut buf = Vec::new();
        match part {
            Part::Description => man.render_description_section(&mut buf)?,
            Part::Synopsis => man.render_synopsis_section(&mut buf)?,
            Part::Options => {
                if sub.get_arguments().all(|a| a.is_hide_set()) {
                    continue;
                }
                man.render_options_section(&mut buf)?
            }
        }
        // Each rendering starts its own `.SH`: inside a subsection, a paragraph instead.
        let text = String::from_utf8(buf).context("man page section")?;
        for line in text.lines() {
            if line.starts_with(".SH") {
                out.extend_from_slice(b".PP\n");
            } else {
                writeln!(out, "{line}")?;
            }
        }
    }
    for nested in sub.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        command_section(out, nested, &path)?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Part {
    Description,
    Synopsis,
    Options,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_page_names_every_subcommand_and_flag() {
        let page = super::render().unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH gossipd 1"), "{}", &page[..200]);
        let cmd = crate::cli::Cli::command();
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!(".SS \"gossipd {}\"", sub.get_name());
            assert!(page.contains(&name), "the man page lacks {name}");
            for nested in sub.get_subcommands() {
                let name = format!(".SS \"gossipd {} {}\"", sub.get_name(), nested.get_name());
                assert!(page.contains(&name), "the man page lacks {name}");
            }
        }
        // Flags are rendered with roff's escaped hyphens.
        for flag in ["cluster\\-key\\-file", "recursor", "http\\-require\\-token", "leave\\-on\\-terminate"] {
            assert!(page.contains(flag), "the man page lacks --{flag}");
        }
        assert!(page.contains(".SH \"EXIT STATUS\""));
        assert!(page.contains("\\fBgossipd force\\-leave\\fR") && !page.contains("(1)\n"), "no pages of their own");
        assert!(!page.contains(".SS \"gossipd man\""), "the hidden `man` subcommand is not documented");
    }
}
