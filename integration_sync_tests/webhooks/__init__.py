"""Tests of the payment webhook receiver and its inbox."""
