"""The Python peer of `deskport validate` for benches/validate.rs: the same file read with
the csv module, names trimmed and required, emails checked and normalized by
email-validator, phones parsed, validated and formatted E.164 by phonenumbers (the row's
country, else the default region), clean and rejected rows written. Usage:
    python3 peer.py INPUT CLEAN REJECTS DEFAULT_REGION
"""
import csv
import sys

import phonenumbers
from email_validator import EmailNotValidError, validate_email


def main():
    source, clean_path, rejects_path, default_region = sys.argv[1:5]
    with open(source, newline="", encoding="utf-8") as f, open(
        clean_path, "w", newline="", encoding="utf-8"
    ) as c, open(rejects_path, "w", newline="", encoding="utf-8") as r:
        rows = csv.DictReader(f)
        clean = csv.writer(c)
        rejects = csv.writer(r)
        clean.writerow(["external_id", "firstname", "lastname", "email", "phones"])
        rejects.writerow(["line", "reason"])
        for n, row in enumerate(rows, start=2):
            problems = []
            first = (row.get("First Name") or "").strip()
            last = (row.get("Last Name") or "").strip()
            if not first and not last:
                problems.append("name.missing")
            email = (row.get("Email") or "").strip()
            if email:
                try:
                    email = validate_email(email, check_deliverability=False).normalized
                except EmailNotValidError:
                    problems.append("email.invalid")
            country = (row.get("Country") or "").strip().upper()
            region = country if len(country) == 2 else default_region
            phones = []
            for column in ("Phone 1", "Phone 2"):
                raw = (row.get(column) or "").strip()
                if not raw:
                    continue
                try:
                    number = phonenumbers.parse(raw, region)
                except phonenumbers.NumberParseException:
                    problems.append("phone.invalid")
                    continue
                if not phonenumbers.is_valid_number(number):
                    problems.append("phone.invalid")
                    continue
                phones.append(
                    phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                )
            if problems:
                rejects.writerow([n, ";".join(problems)])
            else:
                clean.writerow(
                    [row.get("Customer Id", ""), first, last, email, ",".join(phones)]
                )


if __name__ == "__main__":
    main()
