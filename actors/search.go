package actors

// Search: each Area holds the profile and menu of the restaurants in its cell and the neighbouring cells
// (RestaurantListed, sent by every Restaurant to those areas), so a customer's search is one read of the area of the
// customer's cell.
//
// Matching: text is folded to lower case and split into words at anything that is not a letter or a digit; a term
// matches a field when the term's words appear in the field's words consecutively, the last one as a prefix
// ("pad th" matches "Pad Thai"). Relevance, highest first: how many terms matched, then the sum over matched terms
// of the weight of the best field each matched (restaurant name 4, cuisine 3, item name 2, item tag 1). Ties rank by
// distance from the customer, then restaurant id. No terms: every restaurant, nearest first.

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// Search limits.
const (
	DefaultSearchLimit = 20
	MaxSearchLimit     = 100
	MaxSearchTerms     = 10
	MaxSearchTermLen   = 100
)

// Weights of the fields a term can match.
const (
	weightName     = 4
	weightCuisine  = 3
	weightItemName = 2
	weightItemTag  = 1
)

// validateSearch refuses malformed searches.
func validateSearch(q *messages.SearchRestaurants) *Error {
	if len(q.GetTerms()) > MaxSearchTerms {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "at most %d search terms", MaxSearchTerms)
	}
	for i, t := range q.GetTerms() {
		if err := checkText("terms", t, MaxSearchTermLen, false); err != nil {
			return err
		}
		if len(words(t)) == 0 {
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "terms[%d] has no letters or digits", i)
		}
	}
	if q.GetLimit() < 0 || q.GetLimit() > MaxSearchLimit {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "limit must be 0-%d", MaxSearchLimit)
	}
	return checkPosition(q.GetPosition())
}

// search answers q from the restaurants an area holds (q must be valid).
func search(restaurants map[string]*messages.RestaurantListed, q *messages.SearchRestaurants) *messages.SearchResults {
	terms := make([][]string, len(q.GetTerms()))
	for i, t := range q.GetTerms() {
		terms[i] = words(t)
	}
	var hits []*messages.SearchHit
	for id, r := range restaurants {
		hit := &messages.SearchHit{
			RestaurantId: id,
			Name:         r.GetName(),
			Cuisine:      r.GetCuisine(),
			DistanceM:    roundMetres(distanceM(q.GetPosition(), r.GetPosition())),
		}
		if !score(hit, r, terms) {
			continue
		}
		hits = append(hits, hit)
	}
	sort.Slice(hits, func(i, j int) bool {
		a, b := hits[i], hits[j]
		switch {
		case a.GetTermsMatched() != b.GetTermsMatched():
			return a.GetTermsMatched() > b.GetTermsMatched()
		case a.GetScore() != b.GetScore():
			return a.GetScore() > b.GetScore()
		case a.GetDistanceM() != b.GetDistanceM():
			return a.GetDistanceM() < b.GetDistanceM()
		}
		return a.GetRestaurantId() < b.GetRestaurantId()
	})
	limit := int(q.GetLimit())
	if limit == 0 {
		limit = DefaultSearchLimit
	}
	if len(hits) > limit {
		hits = hits[:limit]
	}
	return &messages.SearchResults{Results: hits}
}

// score fills hit's relevance and matching items for the terms; false when terms were given and none matched.
func score(hit *messages.SearchHit, r *messages.RestaurantListed, terms [][]string) bool {
	if len(terms) == 0 {
		return true
	}
	name, cuisine := words(r.GetName()), words(r.GetCuisine())
	itemNames := make([][]string, len(r.GetMenu()))
	for i, it := range r.GetMenu() {
		itemNames[i] = words(it.GetName())
	}
	matchedItem := make([]bool, len(r.GetMenu()))
	for _, term := range terms {
		best := 0
		if contains(name, term) {
			best = weightName
		}
		if best < weightCuisine && contains(cuisine, term) {
			best = weightCuisine
		}
		for i, it := range r.GetMenu() {
			w := 0
			if contains(itemNames[i], term) {
				w = weightItemName
			} else {
				for _, tag := range it.GetTags() {
					if contains(words(tag), term) {
						w = weightItemTag
						break
					}
				}
			}
			if w > 0 {
				matchedItem[i] = true
				best = max(best, w)
			}
		}
		if best > 0 {
			hit.TermsMatched++
			hit.Score += int32(best)
		}
	}
	for i, it := range r.GetMenu() {
		if matchedItem[i] {
			hit.Items = append(hit.Items, &messages.SearchItem{MenuItemId: it.GetId(), Name: it.GetName(), PriceCents: it.GetPriceCents()})
		}
	}
	return hit.GetTermsMatched() > 0
}

// words folds s to lower case and splits it at anything that is not a letter or a digit.
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) })
}

// contains reports whether term's words appear consecutively in field, the last term word as a prefix.
func contains(field, term []string) bool {
	if len(term) == 0 {
		return false
	}
	last := len(term) - 1
	for start := 0; start+len(term) <= len(field); start++ {
		ok := true
		for k, w := range term {
			f := field[start+k]
			if (k < last && f != w) || (k == last && !strings.HasPrefix(f, w)) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// withListing wraps a Restaurant decision that may change what search shows (Create, UpdateMenu): when it emits
// events, it adds the restaurant's new listing (RestaurantListed), sent to the area of its cell and the
// neighbouring areas. s is the state before the decision.
//
//	return withListing(ctx.Identity(), s, now)(decideUpdateMenu(s, req, now))
func withListing(id string, s *messages.RestaurantState, now time.Time) func([]proto.Message, error) ([]proto.Message, error) {
	return func(events []proto.Message, err error) ([]proto.Message, error) {
		if err != nil || len(events) == 0 {
			return events, err
		}
		after := proto.Clone(s).(*messages.RestaurantState)
		for _, ev := range events {
			if err := applyRestaurant(after, ev); err != nil {
				return nil, fmt.Errorf("list restaurant: %w", err)
			}
		}
		cell := AreaOf(after.GetPosition())
		listing := &messages.RestaurantListed{
			RestaurantId: id, Name: after.GetName(), Cuisine: after.GetCuisine(), Position: after.GetPosition(), Cell: cell,
			Menu: after.GetMenu(), ListedAt: timestamppb.New(now),
		}
		for _, area := range areasAround(cell) {
			ev, err := sendTo(KindArea, area, listing)
			if err != nil {
				return nil, err
			}
			events = append(events, ev)
		}
		return events, nil
	}
}
