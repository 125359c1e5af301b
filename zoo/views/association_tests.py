"""The stewards' page for the word-association tests the association release check runs."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from governance.roles import is_steward
from portal.errors import Forbidden, NotFound
from portal.http import shown_to
from zoo.forms import AssociationTestSetForm
from zoo.models import AssociationTestSet
from zoo.services.release_checks import association_test_set_save


def _keeper(request: HttpRequest) -> None:
    if not (request.user.is_staff or is_steward(request.user)):
        raise Forbidden("Only stewards and staff keep the word-association tests.")


@login_required
def association_tests(request: HttpRequest) -> HttpResponse:
    _keeper(request)
    return render(
        request, "zoo/association_tests.html", {"tests": AssociationTestSet.objects.all()}
    )


@login_required
def association_test_edit(request: HttpRequest, pk: int) -> HttpResponse:
    _keeper(request)
    test_set = AssociationTestSet.objects.filter(pk=pk).first()
    if test_set is None:
        raise NotFound("No such association test.")
    form = AssociationTestSetForm(
        request.POST or None, initial=AssociationTestSetForm.initial_of(test_set)
    )
    if request.method == "POST" and form.is_valid():
        with shown_to(request, form) as attempt, transaction.atomic():
            association_test_set_save(
                actor=request.user, test_set=test_set, fields=form.fields_to_save()
            )
        if attempt.succeeded:
            messages.success(request, f"{test_set.name} saved; the next association check uses it.")
            return redirect("zoo:association_tests")
    return render(request, "zoo/association_test_edit.html", {"test_set": test_set, "form": form})
