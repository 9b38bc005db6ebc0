"""Reliability check R6 (issue 9): a full end-to-end run at DEBUG (worker, beat, the HTTP API, the
simulator pushing receipts, webhooks; an OTP, a notify to mainland and international phones, a campaign
upload). No configured secret (every ``SecretStr`` and vendor credential in the settings model, push
tokens, the webhook secret, the API key) in any log line, any Redis value or any command Redis ran
(broker payloads decoded); no whole phone number in any log.

    uv run python -m reliability.r6_secrets

It runs the CI variant (``tests/e2e/test_r6_secrets.py``, the same run), prints its figures, every leak
found with its line, and a PASS/FAIL line; exit status 0 on PASS.
"""

from __future__ import annotations

from reliability.checks import run_tests


def main() -> int:
    return run_tests("R6", "tests/e2e/test_r6_secrets.py", "secrets and privacy")


if __name__ == "__main__":
    raise SystemExit(main())
