from django.urls import path

from exchange.api import views

urlpatterns = [
    path("submit", views.SubmitView.as_view(), name="api-submit"),
    path("cancel/<int:order_id>", views.CancelView.as_view(), name="api-cancel"),
]
