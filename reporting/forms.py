"""The daily-usage page's filter form: turns query parameters into usage_summary() arguments, or errors."""

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator

from billing.models import ModelPrice
from core.users import users_matching
from reporting.filters import MAX_DATE, MIN_DATE, default_start
from reporting.selectors import BUCKETS, default_range

# Beyond this many bars a chart stops being readable, and a day-by-day page with it: a day view is
# refused past it. Weeks and months cover longer views, any the JSON API takes (its bounds are only
# MIN_DATE..MAX_DATE); past this many buckets the page shows them without the chart.
MAX_RANGE_DAYS = 3 * 366
DATE_HELP = "YYYY-MM-DD"


def _date_field(which: str) -> forms.DateField:
    """A date in the API's bounds: past them a date has no local midnight, or its bucket no end."""
    out_of_bounds = f"Enter the {which} as a date between {MIN_DATE} and {MAX_DATE}."
    return forms.DateField(
        required=False,
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        validators=[MinValueValidator(MIN_DATE, out_of_bounds), MaxValueValidator(MAX_DATE, out_of_bounds)],
        error_messages={"invalid": f"Enter the {which} as a date, {DATE_HELP}."},
    )


class UsageFilterForm(forms.Form):
    """Every field is optional: an empty query means the last 30 days by day, for everyone."""

    start = _date_field("start")
    end = _date_field("end")
    bucket = forms.ChoiceField(
        required=False,
        choices=[(name, name.capitalize()) for name in BUCKETS],
        error_messages={"invalid_choice": "Choose the bucket: day, week or month."},
    )
    model = forms.ChoiceField(
        required=False,
        error_messages={"invalid_choice": "No price exists for %(value)s; pick a model from the list."},
    )
    user = forms.CharField(
        required=False,
        max_length=254,
        widget=forms.TextInput(attrs={"placeholder": "username, email or id"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = ModelPrice.objects.order_by("model").values_list("model", flat=True)
        self.fields["model"].choices = [("", "All models"), *((name, name) for name in names)]

    def clean_user(self):
        ref = self.cleaned_data["user"].strip()
        if not ref:
            return None
        matches = users_matching(ref)
        if not matches:
            raise ValidationError(f"No user matches {ref!r}: give a username, an email or an id.")
        if len(matches) > 1:
            raise ValidationError(f"More than one user has the email {ref!r}: give the username instead.")
        return matches[0]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        today_start, default_end = default_range()
        start = data.get("start") or (default_start(data["end"]) if data.get("end") else today_start)
        end = data.get("end") or (max(default_end, start) if data.get("start") else default_end)
        if start > end:
            raise ValidationError("The start date is after the end date: swap them or pick another range.")
        bucket = data.get("bucket") or "day"
        if bucket == "day" and (end - start).days >= MAX_RANGE_DAYS:
            raise ValidationError(
                f"Pick a range of at most {MAX_RANGE_DAYS} days, or show it by week or month."
            )
        data.update(start=start, end=end, bucket=bucket, model=data.get("model") or None)
        return data

    def summary_arguments(self) -> dict:
        """Keyword arguments for reporting.selectors.usage_summary (call only once the form is valid)."""
        data = self.cleaned_data
        return {
            "start": data["start"],
            "end": data["end"],
            "bucket": data["bucket"],
            "user_id": data["user"].pk if data["user"] else None,
            "model": data["model"],
        }
