from django.urls import path

from exchange.api import order_views, views

urlpatterns = [
    path("submit", views.SubmitView.as_view(), name="api-submit"),
    path("cancel/<int:order_id>", views.CancelView.as_view(), name="api-cancel"),
    path("orders", order_views.OrderListView.as_view(), name="api-orders"),
    path("orders/<int:order_id>", order_views.OrderDetailView.as_view(), name="api-order"),
    path("orders/client/<str:symbol>/<str:client_order_id>", order_views.OrderByClientIdView.as_view(),
         name="api-order-by-client-id"),
    path("book/<str:symbol>", views.BookView.as_view(), name="api-book"),
    path("trades/<str:symbol>", views.TradesView.as_view(), name="api-trades"),
]
