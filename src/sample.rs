//! Realistic sample leads for the demo and the benchmarks: the same columns
//! as a typical CRM export (messy phone formats, company names with commas,
//! free-text notes), generated deterministically from a seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;

const FIRST: &[&str] = &[
    "Jaime", "Cody", "Selena", "Kelsey", "Ana", "Marcus", "Priya", "José", "Wei", "Olivia", "Liam",
    "Fatima", "Noah", "Chloé", "Ethan", "Zoë",
];
const LAST: &[&str] = &[
    "Hayes", "Salinas", "Doyle", "Mosley", "Nguyen", "O'Brien", "García", "Smith", "Patel",
    "Kowalski", "Chen", "Müller", "Johnson", "Brown",
];
const COMPANY: &[&str] = &[
    "Mays Inc",
    "Blankenship, Hart and Cole",
    "Stokes-McCormick",
    "Acme \"Global\" LLC",
    "Rivera, Sons & Daughters",
    "Northwind Traders",
    "Blue Sky Roofing",
    "Hunt Group",
    "Massey, Ltd.",
];
const SOURCE: &[&str] = &[
    "LinkedIn Outreach",
    "Cold Call",
    "Web Form",
    "Referral",
    "Trade Show",
];
const STAGE: &[&str] = &[
    "On Hold",
    "Qualified",
    "Closed Won",
    "Closed Lost",
    "Proposal Sent",
];
const NOTES: &[&str] = &[
    "Heart represent while into.",
    "Call back after 3pm, asks about pricing",
    "Multi-line\nnote from the form",
    "",
    "Wants \"premium\" plan; budget 12,500",
];

/// CSV header of generated leads.
pub const HEADER: &[&str] = &[
    "Index",
    "Account Id",
    "Lead Owner",
    "First Name",
    "Last Name",
    "Company",
    "Phone 1",
    "Phone 2",
    "Email 1",
    "Email 2",
    "Website",
    "Source",
    "Deal Stage",
    "Notes",
];

fn phone(rng: &mut StdRng) -> String {
    let (a, b, c) = (
        rng.random_range(200..999),
        rng.random_range(200..999),
        rng.random_range(1000..9999),
    );
    match rng.random_range(0..6) {
        0 => format!("{a}{b}{c}"),
        1 => format!("{a}-{b}-{c}"),
        2 => format!("({a}) {b}-{c}"),
        3 => format!("{a}.{b}.{c}x{}", rng.random_range(10..99999)),
        4 => format!("001-{a}-{b}-{c}x{}", rng.random_range(10..99999)),
        _ => format!("+1-{a}-{b}-{c}"),
    }
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

/// One lead as CSV field values (in `HEADER` order).
pub fn lead(rng: &mut StdRng, index: u64) -> Vec<String> {
    let first = pick(rng, FIRST);
    let last = pick(rng, LAST);
    let user = format!("{}{}", first.to_lowercase(), rng.random_range(1..999));
    vec![
        index.to_string(),
        format!("{:015X}", rng.random::<u64>() & 0xFFF_FFFF_FFFF_FFFF),
        format!("{} {}", pick(rng, FIRST), pick(rng, LAST)),
        first.to_string(),
        last.to_string(),
        pick(rng, COMPANY).to_string(),
        phone(rng),
        phone(rng),
        format!("{user}@example.com"),
        format!(
            "{}{}@example.org",
            last.to_lowercase().replace('\'', ""),
            rng.random_range(1..99)
        ),
        format!(
            "https://{}.example.com/",
            last.to_lowercase().replace('\'', "")
        ),
        pick(rng, SOURCE).to_string(),
        pick(rng, STAGE).to_string(),
        pick(rng, NOTES).to_string(),
    ]
}

/// Write `n` leads as CSV (with header) to `out`.
pub fn write_csv(out: impl Write, n: u64, seed: u64) -> csv::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    for i in 1..=n {
        w.write_record(lead(&mut rng, i))?;
    }
    w.flush()?;
    Ok(())
}
