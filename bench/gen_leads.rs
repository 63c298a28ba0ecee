//! Write N generated leads as CSV (the columns of the public leads sample).
//!
//! usage: gen_leads N OUTPUT

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: gen_leads N OUTPUT");
        std::process::exit(2);
    }
    let n: u64 = args[1].parse()?;
    let f = std::fs::File::create(&args[2])?;
    consign::sample::write_csv(std::io::BufWriter::with_capacity(1 << 20, f), n, 42)?;
    Ok(())
}
