"""The user's own pages, at the site's root (mounted last by config.urls, after /admin/ and /api/)."""

from django.urls import path

from web.views import auth, chats, files, keys, purchases, wallet

app_name = "web"

urlpatterns = [
    path("", wallet.wallet, name="wallet"),
    path("cap/", wallet.spend_cap, name="spend-cap"),
    path("figures/", wallet.figures, name="wallet-figures"),
    path("buy/", purchases.buy_credits, name="buy-credits"),
    path("buy/<int:pk>/checkout/", purchases.purchase_checkout, name="purchase-checkout"),
    path("signin/", auth.SignInView.as_view(), name="signin"),
    path("signout/", auth.SignOutView.as_view(), name="signout"),
    path("signup/", auth.signup, name="signup"),
    path("chats/", chats.chat_list, name="chats"),
    path("chats/<int:pk>/", chats.chat, name="chat"),
    path("files/", files.file_list, name="files"),
    path("files/<int:pk>/delete/", files.file_delete, name="file-delete"),
    path("keys/", keys.key_list, name="keys"),
    path("keys/<int:pk>/", keys.key_edit, name="key-edit"),
    path("keys/<int:pk>/revoke/", keys.key_revoke, name="key-revoke"),
]
