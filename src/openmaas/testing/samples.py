"""Code samples that tests and benchmarks ask the local model to edit: answers that copy long runs of their
prompt (n-gram speculation, batch invariance). One text each, so a benchmark's figures and a test's
assertions are about the same input."""

CODE = """import json


def load(path):
    data = json.load(open(path))
    result = []
    for item in data["items"]:
        if item["price"] > 0:
            result.append({"name": item["name"], "price": item["price"] * 1.2})
    return result
"""
EDITS = [
    "Rename the variable result to rows in this code and return the whole code:",
    "Add a docstring to the function in this code and return the whole code:",
    "Rewrite this code to use a list comprehension and return the whole code:",
]
# whole-file code edits: the answer returns a 30-line module with one change
ORDERS = """import csv
from dataclasses import dataclass


@dataclass
class Order:
    customer: str
    amount: float
    country: str


def read_orders(path):
    with open(path) as handle:
        return [Order(r["customer"], float(r["amount"]), r["country"]) for r in csv.DictReader(handle)]


def total_by_country(orders):
    totals = {}
    for order in orders:
        totals[order.country] = totals.get(order.country, 0.0) + order.amount
    return totals


def top_customers(orders, limit=3):
    spent = {}
    for order in orders:
        spent[order.customer] = spent.get(order.customer, 0.0) + order.amount
    return sorted(spent.items(), key=lambda item: item[1], reverse=True)[:limit]
"""
LONG_EDITS = [
    "Rename the function total_by_country to totals_per_country. Return the complete code.",
    "In this code, rename the variable `orders` to `records` everywhere. Return the complete updated code.",
    "Change the default limit from 3 to 5 in this code. Return the complete code.",
    "Add a docstring to read_orders. Return the complete code.",
    "Rename the class Order to Purchase. Return the complete code.",
    "Make top_customers return only the names. Return the complete code.",
]
