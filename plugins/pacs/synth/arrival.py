"""When each synthetic file reached the archive: its mtime, which intake records as ``received_at``.

A study's files arrive after its images were made, as a hospital's do:

- most studies are sent as they are acquired: each image arrives a few minutes after its
  content time (:data:`LAG_S`);
- some are sent in bulk later the same day or overnight, some days late (a weekend's studies on
  Monday, a modality that was offline), a few weeks late (imports from another hospital,
  corrections): :data:`DELAYS`, drawn once per study;
- the weekly and yearly rhythm and the growth come from the study dates
  (:func:`pacs.synth.builder._day_sampler`), so arrivals follow them.

Study dates and times are taken as UTC (the archive counts days in UTC). No file arrives after
it was written: a time later than the generation's clock is set to that clock (only studies
dated within a few weeks of the day of generation are affected, so an archive dated in the past
is the same whenever it is generated). Delays come from a random generator of their own, so an
archive's patients, studies and pixels are the same as they would be without them.
"""

from __future__ import annotations

import calendar
import datetime
import random

DELAYS: tuple[tuple[float, int, int], ...] = (
    (0.80, 0, 0),                       # sent as acquired
    (0.12, 3600, 14 * 3600),            # in bulk later that day or overnight: 1-14 hours
    (0.06, 86400, 7 * 86400),           # days late: 1-7 days
    (0.02, 14 * 86400, 56 * 86400),     # weeks late: 2-8 weeks
)
"""(probability, shortest, longest delay in seconds) of a study's sending after acquisition."""

LAG_S = (60, 1200)
"""Shortest and longest seconds between an image's content time and its arrival."""


def study_delay(rng: random.Random) -> int:
    """Seconds between a study's acquisition and its sending (one of :data:`DELAYS`)."""
    r = rng.random()
    for p, lo, hi in DELAYS:
        if r < p:
            return rng.randint(lo, hi)
        r -= p
    return 0


def arrival_time(study_date: datetime.date, content_s: int, delay_s: int, lag_s: int, *,
                 clock: float) -> float:
    """The epoch second an image made at ``content_s`` seconds into ``study_date`` (UTC) arrives."""
    made = calendar.timegm(study_date.timetuple()) + content_s
    return float(min(made + delay_s + lag_s, clock))
