"""Market data (shared by every firm) and, per firm, parameter sets and margin snapshots."""

from __future__ import annotations

from django.db import models

from accounts.models import Instrument


class PriceObservation(models.Model):
    """One observed price of an instrument (market reference data, shared)."""

    class Source(models.TextChoices):
        EXCHANGE = "exchange", "Exchange"
        VENDOR = "vendor", "Vendor"
        ORACLE = "oracle", "Oracle round"
        MANUAL = "manual", "Manual"
        DEMO = "demo", "Demo (synthetic)"

    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="prices")
    price = models.DecimalField(max_digits=24, decimal_places=8)
    source = models.CharField(max_length=12, choices=Source.choices)
    observed_at = models.DateTimeField()
    loaded_at = models.DateTimeField(auto_now_add=True)
    oracle_round_id = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["instrument", "-observed_at"]
        indexes = [models.Index(fields=["instrument", "-observed_at"])]

    def __str__(self) -> str:
        return f"{self.instrument} {self.price} @ {self.observed_at:%Y-%m-%d %H:%M}"


class ImpliedVolatility(models.Model):
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="vols")
    volatility = models.DecimalField(max_digits=10, decimal_places=6)
    source = models.CharField(max_length=12, choices=PriceObservation.Source.choices)
    observed_at = models.DateTimeField()

    class Meta:
        ordering = ["instrument", "-observed_at"]
        verbose_name_plural = "implied volatilities"

    def __str__(self) -> str:
        return f"{self.instrument} vol {self.volatility}"


class RiskFreeRate(models.Model):
    currency = models.CharField(max_length=3, default="USD")
    tenor_days = models.PositiveIntegerField(default=90)
    rate = models.DecimalField(max_digits=10, decimal_places=6,
                               help_text="continuously compounded, annual")
    observed_on = models.DateField()

    class Meta:
        ordering = ["currency", "-observed_on"]
        constraints = [models.UniqueConstraint(fields=["currency", "tenor_days", "observed_on"],
                                               name="rate_per_day")]

    def __str__(self) -> str:
        return f"{self.currency} {self.tenor_days}d {self.rate}"
