"""Billing: periods, money, charges, the billing run, re-rating and bill exports."""
