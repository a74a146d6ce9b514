from django.urls import path

from exchange.api import views

urlpatterns = [
    path("submit", views.SubmitView.as_view(), name="api-submit"),
    path("cancel/<int:order_id>", views.CancelView.as_view(), name="api-cancel"),
    path("book/<str:symbol>", views.BookView.as_view(), name="api-book"),
    path("trades/<str:symbol>", views.TradesView.as_view(), name="api-trades"),
]
