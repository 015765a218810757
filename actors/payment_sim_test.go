package actors

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/platterhq/platter/messages"
)

func newTestSim() *PaymentSim {
	return NewPaymentSim(PaymentSimConfig{Now: func() time.Time { return testNow }})
}

func testCard(number string) Card {
	cvc := "123"
	if strings.HasPrefix(number, "37") || strings.HasPrefix(number, "34") {
		cvc = "1234"
	}
	return Card{Number: number, ExpMonth: 12, ExpYear: testNow.Year() + 2, CVC: cvc}
}

// mustToken tokenizes a test card and fails the test if it is refused.
func mustToken(t *testing.T, g *PaymentSim, number string) string {
	t.Helper()
	pm, err := g.Tokenize(context.Background(), testCard(number))
	if err != nil {
		t.Fatalf("tokenize %s: %v", number, err)
	}
	return pm.Token
}

func TestPaymentSimTokenize(t *testing.T) {
	g := newTestSim()
	ok := []struct {
		number, brand, last4 string
	}{
		{TestCardVisa, "visa", "4242"},
		{"4242 4242-4242 4242", "visa", "4242"},
		{TestCardMastercard, "mastercard", "4444"},
		{"2223003122003222", "mastercard", "3222"},
		{TestCardAmex, "amex", "0005"},
		{"6011111111111117", "card", "1117"},
		{TestCardAuthorizeDeclined, "visa", "0341"},
		{TestCardInsufficientFunds, "visa", "9995"},
		{TestCardAuthorizeTransient, "visa", "0119"},
		{TestCardSettlementTransient, "visa", "0267"},
		{TestCardProcessorDown, "visa", "0309"},
	}
	for _, c := range ok {
		pm, err := g.Tokenize(context.Background(), testCard(c.number))
		if err != nil {
			t.Errorf("%s: %v", c.number, err)
			continue
		}
		if pm.Brand != c.brand || pm.Last4 != c.last4 || pm.ExpMonth != 12 || pm.ExpYear != testNow.Year()+2 || !pm.AddedAt.Equal(testNow) {
			t.Errorf("%s: got %+v", c.number, pm)
		}
		if !strings.HasPrefix(pm.Token, simTokenPrefix) || strings.Contains(pm.Token, c.number) {
			t.Errorf("%s: token %q", c.number, pm.Token)
		}
	}
	if a, b := mustToken(t, g, TestCardVisa), mustToken(t, g, TestCardVisa); a == b {
		t.Errorf("two tokenizations gave the same token %q", a)
	}

	refused := []struct {
		name string
		card Card
		want messages.ErrorReason
	}{
		{"declined", testCard(TestCardDeclined), messages.ErrorReason_PAYMENT_DECLINED},
		{"expired test card", testCard(TestCardExpired), messages.ErrorReason_PAYMENT_DECLINED},
		{"incorrect cvc test card", testCard(TestCardIncorrectCVC), messages.ErrorReason_PAYMENT_DECLINED},
		{"expired last month", Card{Number: TestCardVisa, ExpMonth: 10, ExpYear: 2026, CVC: "123"}, messages.ErrorReason_PAYMENT_DECLINED},
		{"luhn", testCard("4242424242424241"), messages.ErrorReason_INVALID_ARGUMENT},
		{"letters", testCard("4242abcd42424242"), messages.ErrorReason_INVALID_ARGUMENT},
		{"short", testCard("42424242424"), messages.ErrorReason_INVALID_ARGUMENT},
		{"month 13", Card{Number: TestCardVisa, ExpMonth: 13, ExpYear: 2030, CVC: "123"}, messages.ErrorReason_INVALID_ARGUMENT},
		{"two-digit year", Card{Number: TestCardVisa, ExpMonth: 1, ExpYear: 30, CVC: "123"}, messages.ErrorReason_INVALID_ARGUMENT},
		{"cvc too short", Card{Number: TestCardVisa, ExpMonth: 1, ExpYear: 2030, CVC: "12"}, messages.ErrorReason_INVALID_ARGUMENT},
		{"amex needs 4", Card{Number: TestCardAmex, ExpMonth: 1, ExpYear: 2030, CVC: "123"}, messages.ErrorReason_INVALID_ARGUMENT},
	}
	for _, c := range refused {
		if _, err := g.Tokenize(context.Background(), c.card); codeOf(t, err) != c.want {
			t.Errorf("%s: got %v, want %s", c.name, err, c.want)
		}
	}
	// Valid through the last day of the expiry month.
	if _, err := g.Tokenize(context.Background(), Card{Number: TestCardVisa, ExpMonth: 11, ExpYear: 2026, CVC: "123"}); err != nil {
		t.Errorf("card expiring this month: %v", err)
	}
}

func TestPaymentSimAuthorizeCapture(t *testing.T) {
	ctx := context.Background()
	g := newTestSim()
	tok := mustToken(t, g, TestCardVisa)
	id, err := g.Authorize(ctx, tok, 2500, "o_1/authorize")
	if err != nil {
		t.Fatal(err)
	}
	again, err := g.Authorize(ctx, tok, 2500, "o_1/authorize")
	if err != nil || again != id {
		t.Fatalf("retried authorize: %q, %v; want %q", again, err, id)
	}
	if _, err := g.Authorize(ctx, tok, 2600, "o_1/authorize"); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Errorf("key reused with another amount: %v", err)
	}
	if other, _ := g.Authorize(ctx, tok, 2500, "o_2/authorize"); other == id {
		t.Errorf("another key gave the same authorisation %q", id)
	}
	for _, bad := range []int64{0, -1, simMaxAuthorizeCents + 1} {
		if _, err := g.Authorize(ctx, tok, bad, "k"); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
			t.Errorf("amount %d: %v", bad, err)
		}
	}
	if _, err := g.Authorize(ctx, "tok_other", 100, "k"); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Errorf("unknown token: %v", err)
	}
	if _, err := g.Authorize(ctx, tok, 100, ""); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Errorf("no idempotency key: %v", err)
	}

	if err := g.Capture(ctx, id, 2501, "o_1/capture-too-much"); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Errorf("capture above the authorised amount: %v", err)
	}
	if err := g.Capture(ctx, id, 2000, "o_1/capture"); err != nil {
		t.Fatal(err)
	}
	if err := g.Capture(ctx, id, 2000, "o_1/capture"); err != nil {
		t.Errorf("retried capture: %v", err)
	}
	if err := g.Capture(ctx, id, 500, "o_1/capture-2"); codeOf(t, err) != messages.ErrorReason_FAILED_PRECONDITION {
		t.Errorf("second capture: %v", err)
	}
	if err := g.Void(ctx, id, "o_1/void"); codeOf(t, err) != messages.ErrorReason_FAILED_PRECONDITION {
		t.Errorf("void after capture: %v", err)
	}
	if err := g.Refund(ctx, id, 1500, "o_1/refund-1"); err != nil {
		t.Fatal(err)
	}
	if err := g.Refund(ctx, id, 1500, "o_1/refund-1"); err != nil {
		t.Errorf("retried refund: %v", err)
	}
	if err := g.Refund(ctx, id, 501, "o_1/refund-2"); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Errorf("refund above the captured rest: %v", err)
	}
	want := SimAuthorization{ID: id, Token: tok, AuthorizedCents: 2500, CapturedCents: 2000, RefundedCents: 1500}
	if got, ok := g.Authorization(id); !ok || got != want {
		t.Errorf("ledger: %+v, want %+v", got, want)
	}
}

func TestPaymentSimVoid(t *testing.T) {
	ctx := context.Background()
	g := newTestSim()
	id, err := g.Authorize(ctx, mustToken(t, g, TestCardMastercard), 900, "o_v/authorize")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Void(ctx, id, "o_v/void"); err != nil {
		t.Fatal(err)
	}
	if err := g.Void(ctx, id, "o_v/void"); err != nil {
		t.Errorf("retried void: %v", err)
	}
	if err := g.Void(ctx, id, "o_v/void-2"); codeOf(t, err) != messages.ErrorReason_FAILED_PRECONDITION {
		t.Errorf("second void: %v", err)
	}
	if err := g.Capture(ctx, id, 900, "o_v/capture"); codeOf(t, err) != messages.ErrorReason_FAILED_PRECONDITION {
		t.Errorf("capture after void: %v", err)
	}
	if err := g.Refund(ctx, id, 1, "o_v/refund"); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Errorf("refund of nothing captured: %v", err)
	}
	if err := g.Void(ctx, "auth_bogus", "k"); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Errorf("unknown authorisation: %v", err)
	}
	if got, _ := g.Authorization(id); !got.Voided || got.CapturedCents != 0 {
		t.Errorf("ledger: %+v", got)
	}
}

func TestPaymentSimTestCards(t *testing.T) {
	ctx := context.Background()
	g := NewPaymentSim(PaymentSimConfig{TransientFailures: 3, Now: func() time.Time { return testNow }})

	for _, number := range []string{TestCardAuthorizeDeclined, TestCardInsufficientFunds} {
		tok := mustToken(t, g, number)
		for range 2 { // the decline is final and remembered
			if _, err := g.Authorize(ctx, tok, 100, "decline/"+number); codeOf(t, err) != messages.ErrorReason_PAYMENT_DECLINED || IsTransient(err) {
				t.Errorf("%s: %v", number, err)
			}
		}
	}

	flaky := mustToken(t, g, TestCardAuthorizeTransient)
	for i := range 3 {
		_, err := g.Authorize(ctx, flaky, 100, "flaky")
		if !errors.Is(err, ErrPaymentUnavailable) || !IsTransient(err) {
			t.Fatalf("attempt %d: %v, want a transient failure", i+1, err)
		}
	}
	if _, err := g.Authorize(ctx, flaky, 100, "flaky"); err != nil {
		t.Fatalf("attempt 4: %v", err)
	}
	if _, err := g.Authorize(ctx, flaky, 100, "flaky-2"); !IsTransient(err) {
		t.Errorf("a new key starts failing again: %v", err)
	}

	down := mustToken(t, g, TestCardProcessorDown)
	for i := range 10 {
		if _, err := g.Authorize(ctx, down, 100, "down"); !errors.Is(err, ErrPaymentUnavailable) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}

	settle := mustToken(t, g, TestCardSettlementTransient)
	id, err := g.Authorize(ctx, settle, 700, "settle/authorize")
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	for i := range 3 {
		if err := g.Capture(ctx, id, 700, "settle/capture"); !errors.Is(err, ErrPaymentUnavailable) {
			t.Fatalf("capture attempt %d: %v", i+1, err)
		}
		if got, _ := g.Authorization(id); got.CapturedCents != 0 {
			t.Fatalf("a failed capture moved money: %+v", got)
		}
	}
	if err := g.Capture(ctx, id, 700, "settle/capture"); err != nil {
		t.Fatalf("capture attempt 4: %v", err)
	}
	if got, _ := g.Authorization(id); got.CapturedCents != 700 {
		t.Errorf("ledger: %+v", got)
	}
}

// TestPaymentSimRestart: a fresh simulator (a restarted node) serves tokens and authorisations of an earlier one.
func TestPaymentSimRestart(t *testing.T) {
	ctx := context.Background()
	before := newTestSim()
	tok := mustToken(t, before, TestCardVisa)
	id, err := before.Authorize(ctx, tok, 1200, "o_r/authorize")
	if err != nil {
		t.Fatal(err)
	}
	after := newTestSim()
	if again, err := after.Authorize(ctx, tok, 1200, "o_r/authorize"); err != nil || again != id {
		t.Errorf("authorize after restart: %q, %v; want %q", again, err, id)
	}
	other := newTestSim()
	if err := other.Capture(ctx, id, 1300, "o_r/capture"); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Errorf("capture above the amount in the id: %v", err)
	}
	if err := other.Capture(ctx, id, 1200, "o_r/capture-ok"); err != nil {
		t.Errorf("capture after restart: %v", err)
	}
}

func TestIsTransient(t *testing.T) {
	cases := map[string]struct {
		err  error
		want bool
	}{
		"nil":         {nil, false},
		"refusal":     {refuse(messages.ErrorReason_PAYMENT_DECLINED, "no"), false},
		"unavailable": {ErrPaymentUnavailable, true},
		"wrapped":     {errors.Join(errors.New("x"), ErrPaymentUnavailable), true},
		"timeout":     {context.DeadlineExceeded, true},
	}
	for name, c := range cases {
		if got := IsTransient(c.err); got != c.want {
			t.Errorf("%s: IsTransient = %v", name, got)
		}
	}
}

func TestLuhn(t *testing.T) {
	for _, n := range []string{TestCardVisa, TestCardMastercard, TestCardAmex, TestCardDeclined, TestCardExpired,
		TestCardIncorrectCVC, TestCardAuthorizeDeclined, TestCardInsufficientFunds, TestCardAuthorizeTransient,
		TestCardSettlementTransient, TestCardProcessorDown} {
		if !luhnValid(n) {
			t.Errorf("test card %s fails the Luhn check", n)
		}
	}
	if luhnValid("4242424242424243") {
		t.Error("a wrong check digit passes")
	}
}
