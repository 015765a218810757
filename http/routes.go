package http

import "github.com/valyala/fasthttp"

// routes is the route table: every route of API.md that the edge serves, with who may use it and the rate limit
// it counts against. openapi.json documents exactly these (TestOpenAPIMatchesRoutes).
func (s *Server) routes() {
	const (
		get, post, put, patch, del = fasthttp.MethodGet, fasthttp.MethodPost, fasthttp.MethodPut, fasthttp.MethodPatch, fasthttp.MethodDelete
	)
	add := s.router.add

	// Operations and documents.
	add(get, "/healthz", accessPublic, limitNone, s.handleHealthz)
	add(get, "/readyz", accessPublic, limitNone, s.handleReadyz)
	add(get, "/metrics", accessOperator, limitNone, s.handleMetrics)
	add(get, "/openapi.json", accessPublic, limitNone, s.handleOpenAPI)
	add(get, "/v1/admin/cluster", accessOperator, limitNone, s.handleAdminCluster)
	add(post, "/v1/admin/drain", accessOperator, limitNone, s.handleDrain)
	add(put, "/v1/admin/areas/{area}/auto-assign", accessOperator, limitNone, s.handleSetAutoAssign)
	add(post, "/v1/admin/signing-keys/rotate", accessOperator, limitNone, s.handleRotateSigningKeys)

	// Customers and profile.
	add(post, "/v1/customers", accessPublic, limitLogin, s.handleCreateCustomer)
	add(get, "/v1/customers/me", accessCustomer, limitNone, s.handleGetCustomer)
	add(patch, "/v1/customers/me", accessCustomer, limitNone, s.handleUpdateCustomer)
	add(put, "/v1/customers/me/address", accessCustomer, limitNone, s.handleSetAddress)
	add(put, "/v1/customers/me/payment-method", accessCustomer, limitNone, s.handleSetPaymentMethod)
	add(get, "/v1/customers/me/feed", accessCustomer, limitNone, s.handleCustomerFeed)

	// Search, cart, orders.
	add(get, "/v1/search", accessPublic, limitSearch, s.handleSearch)
	add(get, "/v1/cart", accessCustomer, limitNone, s.handleGetCart)
	add(post, "/v1/cart/items", accessCustomer, limitNone, s.handleAddToCart)
	add(del, "/v1/cart/items/{menu_item_id}", accessCustomer, limitNone, s.handleRemoveFromCart)
	add(post, "/v1/orders", accessCustomer, limitOrder, s.handlePlaceOrder)
	add(get, "/v1/orders", accessCustomer, limitNone, s.handleListOrders)
	add(get, "/v1/orders/{id}", accessOrderParty, limitNone, s.handleGetOrder)
	add(get, "/v1/orders/{id}/status", accessOrderParty, limitNone, s.handleOrderStatus)
	add(post, "/v1/orders/{id}/cancel", accessOrderParty, limitNone, s.handleCancelOrder)

	// Restaurants.
	add(post, "/v1/restaurants", accessOperator, limitNone, s.handleCreateRestaurant)
	add(get, "/v1/restaurants/{id}", accessPublic, limitNone, s.handleGetRestaurant)
	add(put, "/v1/restaurants/{id}/menu", accessRestaurant, limitNone, s.handleUpdateMenu)
	add(get, "/v1/restaurants/{id}/orders", accessRestaurant, limitNone, s.handleRestaurantOrders)
	add(post, "/v1/restaurants/{id}/orders/{order_id}/accept", accessRestaurant, limitNone, s.handleAcceptOrder)
	add(post, "/v1/restaurants/{id}/orders/{order_id}/reject", accessRestaurant, limitNone, s.handleRejectOrder)
	add(post, "/v1/restaurants/{id}/orders/{order_id}/ready", accessRestaurant, limitNone, s.handleOrderReady)
	add(post, "/v1/restaurants/{id}/orders/{order_id}/picked-up", accessRestaurant, limitNone, s.handleOrderPickedUp)
	add(get, "/v1/restaurants/{id}/feed", accessRestaurant, limitNone, s.handleRestaurantFeed)

	// Dashers.
	add(post, "/v1/dashers", accessOperator, limitNone, s.handleCreateDasher)
	add(get, "/v1/dashers/me", accessDasher, limitNone, s.handleGetDasher)
	add(put, "/v1/dashers/me/status", accessDasher, limitNone, s.handleDasherStatus)
	add(put, "/v1/dashers/me/location", accessDasher, limitNone, s.handleDasherLocation)
	add(post, "/v1/dashers/me/offers/{order_id}/accept", accessDasher, limitNone, s.handleAcceptOffer)
	add(post, "/v1/dashers/me/offers/{order_id}/decline", accessDasher, limitNone, s.handleDeclineOffer)
	add(post, "/v1/dashers/me/orders/{order_id}/delivered", accessDasher, limitNone, s.handleDelivered)
	add(get, "/v1/dashers/me/feed", accessDasher, limitNone, s.handleDasherFeed)

	// OAuth 2.0 and staff clients (auth.go).
	s.securityRoutes()
}
