#!/usr/bin/env python3
"""Benchmark baseline (a): the same mapping as bench config P1, in Python's
csv + gzip (level 6). usage: baseline_csv_gzip.py INPUT.csv OUTPUT.csv.gz"""
import csv
import gzip
import re
import sys

EXT = re.compile(r"(ext|x)", re.IGNORECASE)
NONDIGIT = re.compile(r"\D")


def digits_only(s):
    m = EXT.search(s)
    if m:
        s = s[: m.start()]
    return NONDIGIT.sub("", s)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, newline="", encoding="utf-8") as f, gzip.open(dst, "wt", compresslevel=6, newline="", encoding="utf-8") as out:
        w = csv.writer(out, lineterminator="\r\n")
        w.writerow(["account_id", "first_name", "last_name", "company", "phone", "email"])
        for r in csv.DictReader(f):
            w.writerow([
                r["Account Id"],
                r["First Name"],
                r["Last Name"],
                r["Company"],
                digits_only(r["Phone 1"]),
                r["Email 1"].lower(),
            ])


if __name__ == "__main__":
    main()
