"""Disbursement: payment batches, payments, payment files, bank results, reconciliation (funds context)."""
