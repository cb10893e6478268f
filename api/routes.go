package api

import "net/http"

var (
	checkout = []string{RoleClient}
	vendors  = []string{RoleVendor}
	admins   = []string{RoleAdmin}
)

func (s *Server) routes() {
	r := &s.router
	r.add(http.MethodPost, "/v1/holds", checkout, s.createHold)
	r.add(http.MethodGet, "/v1/holds/{id}", checkout, s.getHold)
	r.add(http.MethodPost, "/v1/holds/{id}/commit", checkout, s.commitHold).class = finishing
	r.add(http.MethodPost, "/v1/holds/{id}/release", checkout, s.releaseHold).class = finishing
	r.add(http.MethodPost, "/v1/holds/{id}/extend", checkout, s.extendHold).class = finishing
	r.add(http.MethodPost, "/v1/holds/{id}/adjust", checkout, s.adjustHold).class = finishing
	r.add(http.MethodGet, "/v1/availability/{sku}", checkout, s.availability)
	r.add(http.MethodPut, "/v1/notify/webhook", checkout, s.putNoticeWebhook)
	r.add(http.MethodPost, "/v1/notify", checkout, s.createInterest)
	r.add(http.MethodGet, "/v1/notify", checkout, s.listInterests)
	r.add(http.MethodDelete, "/v1/notify/{id}", checkout, s.cancelInterest)

	r.add(http.MethodGet, "/v1/vendors/{vendor}/inventory", vendors, s.vendorInventory)
	r.add(http.MethodGet, "/v1/vendors/{vendor}/summary", vendors, s.vendorSummary)
	r.add(http.MethodPost, "/v1/vendors/{vendor}/inventory/{sku}/update", vendors, s.vendorUpdate).class = finishing
	r.add(http.MethodPost, "/v1/vendors/{vendor}/inventory/bulk_update", vendors, s.vendorBulk).class = finishing
	r.add(http.MethodPost, "/v1/vendors/{vendor}/inventory/imports", vendors, s.createImport).streamsBody = true
	r.add(http.MethodGet, "/v1/vendors/{vendor}/inventory/imports", vendors, s.listImports)
	r.add(http.MethodGet, "/v1/vendors/{vendor}/inventory/imports/{id}", vendors, s.getImport)
	r.add(http.MethodPost, "/v1/vendors/{vendor}/inventory/imports/{id}/approve", vendors, s.decideImport(true))
	r.add(http.MethodPost, "/v1/vendors/{vendor}/inventory/imports/{id}/reject", vendors, s.decideImport(false))
	r.add(http.MethodGet, "/v1/vendors/{vendor}/inventory/{sku}/status", vendors, s.poolStatus)
	r.add(http.MethodPost, "/v1/vendors/{vendor}/inventory/subscribe", vendors, s.subscribe)
	r.add(http.MethodGet, "/v1/vendors/{vendor}/inventory/subscriptions", vendors, s.subscriptions)
	r.add(http.MethodDelete, "/v1/vendors/{vendor}/inventory/subscriptions/{id}", vendors, s.unsubscribe)
	r.add(http.MethodGet, "/v1/vendors/{vendor}/inventory/deliveries", vendors, s.deliveries)
	r.add(http.MethodGet, "/v1/vendors/{vendor}/guardrails", vendors, s.getGuardrails)
	r.add(http.MethodPut, "/v1/vendors/{vendor}/guardrails", vendors, s.putGuardrails)
	r.add(http.MethodGet, "/v1/vendors/{vendor}/quarantine", vendors, s.listQuarantine)
	r.add(http.MethodPost, "/v1/vendors/{vendor}/quarantine/{id}/approve", vendors, s.decideQuarantine(true)).class = finishing
	r.add(http.MethodPost, "/v1/vendors/{vendor}/quarantine/{id}/reject", vendors, s.decideQuarantine(false)).class = finishing
	r.add(http.MethodPost, "/v1/vendors/{vendor}/schedules", vendors, s.createSchedule)
	r.add(http.MethodGet, "/v1/vendors/{vendor}/schedules", vendors, s.listSchedules)
	r.add(http.MethodGet, "/v1/vendors/{vendor}/schedules/{id}", vendors, s.getSchedule)
	r.add(http.MethodDelete, "/v1/vendors/{vendor}/schedules/{id}", vendors, s.deleteSchedule)
	r.add(http.MethodGet, "/v1/vendors/{vendor}/schedules/{id}/runs", vendors, s.scheduleRuns)
	r.add(http.MethodPost, "/v1/vendors/{vendor}/feeds", vendors, s.createFeed)
	r.add(http.MethodGet, "/v1/vendors/{vendor}/feeds", vendors, s.listFeeds)
	r.add(http.MethodGet, "/v1/vendors/{vendor}/feeds/{id}", vendors, s.getFeed)
	r.add(http.MethodDelete, "/v1/vendors/{vendor}/feeds/{id}", vendors, s.deleteFeed)
	r.add(http.MethodGet, "/v1/vendors/{vendor}/feeds/{id}/runs", vendors, s.feedRuns)
	r.add(http.MethodGet, "/v1/inventory/events", vendors, s.inventoryEvents)

	r.add(http.MethodPut, "/v1/pools/{location}/{sku}", admins, s.putPool)
	r.add(http.MethodPut, "/v1/regions/{region}", admins, s.putRegion)
	r.add(http.MethodDelete, "/v1/regions/{region}", admins, s.deleteRegion)
	r.add(http.MethodGet, "/v1/regions", checkout, s.listRegions)
	r.add(http.MethodGet, "/v1/regions/{region}", checkout, s.getRegion)
	r.add(http.MethodGet, "/v1/regions/{region}/items", checkout, s.regionItems)

	r.add(http.MethodGet, "/healthz", nil, s.healthz)
	r.add(http.MethodGet, "/readyz", nil, s.readyz)
	r.add(http.MethodGet, "/metrics", nil, s.serveMetrics)
	r.add(http.MethodGet, "/openapi.json", nil, s.openapi)
}
