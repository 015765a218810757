package http_test

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// TestOpenAPIListsTheValues: the descriptions of the string fields whose values the code fixes (the order,
// kitchen and delivery statuses; the feed entry types) name every value the code can answer, taken from the code
// itself (the proto enums, the actors' feed types), so a value added there and not documented fails here.
func TestOpenAPIListsTheValues(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Description string `json:"description"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(http.OpenAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	enumValues := func(e protoreflect.EnumDescriptor, prefix string) []string {
		var out []string
		for i := range e.Values().Len() {
			if v := e.Values().Get(i); v.Number() != 0 {
				out = append(out, strings.TrimPrefix(string(v.Name()), prefix))
			}
		}
		return out
	}
	var feedTypes []string
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if typ := actors.FeedTypeOf(mt.New().Interface()); typ != "" {
			feedTypes = append(feedTypes, typ)
		}
		return true
	})
	feedTypes = append(feedTypes, actors.FeedDasherOffline) // the dasher's own entry, no workflow message
	if len(feedTypes) < 12 {
		t.Fatalf("found only the feed types %v", feedTypes)
	}
	orderStatus := enumValues(messages.OrderStatus(0).Descriptor(), "ORDER_STATUS_")
	for _, tc := range []struct {
		schemas []string
		field   string
		values  []string
	}{
		{[]string{"OrderView", "OrderStatusView", "OrderSummary", "CustomerOrder", "OpenOrder"}, "status", orderStatus},
		{[]string{"OrderView"}, "kitchen_status", enumValues(messages.KitchenStatus(0).Descriptor(), "KITCHEN_")},
		{[]string{"OrderView"}, "delivery_status", enumValues(messages.DeliveryStatus(0).Descriptor(), "DELIVERY_")},
		{[]string{"FeedItem"}, "type", feedTypes},
	} {
		for _, schema := range tc.schemas {
			desc := doc.Components.Schemas[schema].Properties[tc.field].Description
			for _, v := range tc.values {
				if !containsWord(desc, v) {
					t.Errorf("openapi.json %s.%s does not list %s: %q", schema, tc.field, v, desc)
				}
			}
		}
	}
}

// containsWord reports whether s holds v as a whole word (READY is not found in READY_FOR_PICKUP).
func containsWord(s, v string) bool {
	isWord := func(r rune) bool { return r == '_' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' }
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return !isWord(r) }) {
		if w == v {
			return true
		}
	}
	return false
}
