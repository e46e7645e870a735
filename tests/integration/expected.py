"""The ledger of pipeline/samples/stripe, computed by hand from the scenario.

(customer, currency, seq, UTC day, type, amount, mrr_after, kind, churn reason key, delinquent)
"""

EXPECTED_MOVEMENTS = [
    # Team plan 1500 × 3 seats, trial converts.
    ("cus_acme", "usd", 1, "2024-01-15", "new", 4500, 4500, None, None, False),
    # 3 → 5 seats: 2 × 1500.
    ("cus_acme", "usd", 2, "2024-02-10", "expansion", 3000, 7500, "seats", None, False),
    # Team → Business (2500 × 5 = 12500).
    ("cus_acme", "usd", 3, "2024-03-10", "expansion", 5000, 12500, "upgrade", None, False),
    # Forever 20 % off: 12500 × 0.8 = 10000.
    ("cus_acme", "usd", 4, "2024-04-10", "contraction", 2500, 10000, "discount", None, False),
    # cancel_at_period_end on 05-10 keeps the MRR; the deletion churns it.
    ("cus_acme", "usd", 5, "2024-06-10", "churn", 10000, 0, None, "too_expensive", False),
    # Annual 120000 / 12.
    ("cus_globex", "usd", 1, "2024-01-20", "new", 10000, 10000, None, None, False),
    # past_due still counts; unpaid does not, and is delinquent.
    ("cus_globex", "usd", 2, "2024-03-20", "churn", 10000, 0, None, "unknown", True),
    ("cus_globex", "usd", 3, "2024-05-05", "reactivation", 8000, 8000, None, None, False),
    # created (incomplete) and updated (active) in one second: new 4900 × 2.
    ("cus_initech", "eur", 1, "2024-02-01", "new", 9800, 9800, None, None, False),
    ("cus_initech", "eur", 2, "2024-03-01", "expansion", 1500, 11300, "cross_sell", None, False),
    # Two same-second updates 2 → 3 → 4 seats: the chain ends at 4 (+2 × 4900).
    ("cus_initech", "eur", 3, "2024-04-01", "expansion", 9800, 21100, "seats", None, False),
    # Quarterly 30000 / 3 + weekly 1000 × 52 / 12 + metered 0 = 14333.33 → 14333.
    ("cus_umbrella", "usd", 1, "2024-01-10", "new", 14333, 14333, None, None, False),
    # amount_off 2000 per quarterly invoice = 666.67 a month: 13666.67 → 13667.
    ("cus_umbrella", "usd", 2, "2024-02-15", "contraction", 666, 13667, "discount", None, False),
    ("cus_umbrella", "usd", 3, "2024-04-15", "churn", 13667, 0, None, "payment_failed", True),
]

#: Events whose discount is an id only: priced without it when there is no API key.
WARNED_WITHOUT_API = {"evt_ini_d"}
