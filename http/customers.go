package http

import (
	nethttp "net/http"
	"regexp"
	"strings"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

// Customers and profile (API.md): the Customer actor whose identity is the caller's customer id.

// Limits the edge checks before a request reaches an actor (the actors check them again).
const (
	maxNameLen      = actors.MaxNameLen
	minPasswordLen  = 8
	maxPasswordLen  = 128
	maxReasonLen    = 500
	maxSearchTerms  = 10
	maxSearchTermLn = 100
)

var (
	emailPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	phonePattern = regexp.MustCompile(`^\+?[0-9 ()-]{5,32}$`)
	digits       = regexp.MustCompile(`^[0-9]+$`)
)

type createCustomerRequest struct {
	Name     string `json:"name"`
	Email    string `json:"email"`
	Password string `json:"password"`
	Phone    string `json:"phone"`
}

type updateCustomerRequest struct {
	Name  *string `json:"name"`
	Phone *string `json:"phone"`
}

type addressRequest struct {
	Line1      string    `json:"line1"`
	City       string    `json:"city"`
	PostalCode string    `json:"postal_code"`
	Position   *position `json:"position"`
}

type paymentMethodRequest struct {
	CardNumber string `json:"card_number"`
	ExpMonth   *int64 `json:"exp_month"`
	ExpYear    *int64 `json:"exp_year"`
	CVC        string `json:"cvc"`
}

func checkEmail(email string) error {
	if err := checkText("email", email, actors.MaxEmailLen, true); err != nil {
		return err
	}
	if !emailPattern.MatchString(email) {
		return Errorf(CodeInvalidArgument, "email is not an email address")
	}
	return nil
}

func checkPhone(phone string, required bool) error {
	if phone == "" && !required {
		return nil
	}
	if !phonePattern.MatchString(phone) {
		return Errorf(CodeInvalidArgument, "phone must be 5-32 characters of digits, spaces and + - ( )")
	}
	return nil
}

func checkPassword(pw string) error {
	n := len([]rune(pw))
	if n < minPasswordLen || n > maxPasswordLen {
		return Errorf(CodeInvalidArgument, "password must be %d-%d characters", minPasswordLen, maxPasswordLen)
	}
	return nil
}

// checkNewAccount checks the fields every sign-in account is created with (a customer's sign-up, a dasher made by
// an operator): a name, an email that is the login, and a password.
func checkNewAccount(name, email, password string) error {
	if err := checkText("name", name, maxNameLen, true); err != nil {
		return err
	}
	if err := checkEmail(email); err != nil {
		return err
	}
	return checkPassword(password)
}

// handleCreateCustomer signs a customer up: Backend.Accounts keeps the email and the password's hash (the customer
// then signs in through the authorize form), then the Customer actor is created.
func (s *Server) handleCreateCustomer(c *call) error {
	var req createCustomerRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	if err := checkNewAccount(req.Name, req.Email, req.Password); err != nil {
		return err
	}
	if err := checkPhone(req.Phone, false); err != nil {
		return err
	}
	id := c.newID("c_")
	ctx, cancel := s.deadline()
	defer cancel()
	if err := s.createLogin(ctx, RoleCustomer, id, req.Email, req.Password); err != nil {
		return err
	}
	view, err := callActor[*messages.CustomerView](ctx, s.backend.Actors, kindCustomer, id, "Create", &messages.CreateCustomer{
		CommandId: c.commandID("create"), Name: req.Name, Email: req.Email, Phone: req.Phone,
	})
	if err != nil {
		return err
	}
	c.ctx.Response.Header.Set("Location", "/v1/customers/me")
	return s.writeProto(c.ctx, nethttp.StatusCreated, view)
}

func (s *Server) handleGetCustomer(c *call) error {
	if err := knownQuery(c.ctx); err != nil {
		return err
	}
	ctx, cancel := s.deadline()
	defer cancel()
	view, err := callActor[*messages.CustomerView](ctx, s.backend.Actors, kindCustomer, c.who.ID, "Get", &messages.GetCustomer{})
	if err != nil {
		return err
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, view)
}

func (s *Server) handleUpdateCustomer(c *call) error {
	var req updateCustomerRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	if req.Name == nil && req.Phone == nil {
		return Errorf(CodeInvalidArgument, "name or phone is required")
	}
	cmd := &messages.UpdateCustomerProfile{CommandId: c.commandID("update")}
	if req.Name != nil {
		if err := checkText("name", *req.Name, maxNameLen, true); err != nil {
			return err
		}
		cmd.Name = *req.Name
	}
	if req.Phone != nil {
		if err := checkPhone(*req.Phone, true); err != nil {
			return err
		}
		cmd.Phone = *req.Phone
	}
	ctx, cancel := s.deadline()
	defer cancel()
	view, err := callActor[*messages.CustomerView](ctx, s.backend.Actors, kindCustomer, c.who.ID, "UpdateProfile", cmd)
	if err != nil {
		return err
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, view)
}

func (s *Server) handleSetAddress(c *call) error {
	var req addressRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	if err := checkText("line1", req.Line1, actors.MaxAddressLineLen, true); err != nil {
		return err
	}
	if err := checkText("city", req.City, actors.MaxCityLen, true); err != nil {
		return err
	}
	if err := checkText("postal_code", req.PostalCode, actors.MaxPostalCodeLen, true); err != nil {
		return err
	}
	pos, err := checkPosition("position", req.Position)
	if err != nil {
		return err
	}
	ctx, cancel := s.deadline()
	defer cancel()
	view, err := callActor[*messages.CustomerView](ctx, s.backend.Actors, kindCustomer, c.who.ID, "SetAddress", &messages.SetAddress{
		CommandId: c.commandID("address"),
		Address:   &messages.Address{Line1: req.Line1, City: req.City, PostalCode: req.PostalCode, Position: pos},
	})
	if err != nil {
		return err
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, view)
}

// handleSetPaymentMethod hands the card to the Customer actor, which hands it to the payment gateway and keeps
// only the token and the public facts. The card number and CVC are never logged (the edge logs no bodies), and
// the Idempotency-Key fingerprint of this route holds only their HMAC under a key that is not stored (secretMAC).
func (s *Server) handleSetPaymentMethod(c *call) error {
	var req paymentMethodRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	number := strings.NewReplacer(" ", "", "-", "").Replace(req.CardNumber)
	if len(number) < 12 || len(number) > 19 || !digits.MatchString(number) {
		return Errorf(CodeInvalidArgument, "card_number must be 12-19 digits")
	}
	month, err := checkInt("exp_month", req.ExpMonth, 1, 12)
	if err != nil {
		return err
	}
	year, err := checkInt("exp_year", req.ExpYear, 2000, 2199)
	if err != nil {
		return err
	}
	if len(req.CVC) < 3 || len(req.CVC) > 4 || !digits.MatchString(req.CVC) {
		return Errorf(CodeInvalidArgument, "cvc must be 3 or 4 digits")
	}
	ctx, cancel := s.deadline()
	defer cancel()
	view, err := callActor[*messages.CustomerView](ctx, s.backend.Actors, kindCustomer, c.who.ID, "SetPaymentMethod", &messages.SetPaymentMethod{
		CommandId: c.commandID("payment"), CardNumber: number, ExpMonth: int32(month), ExpYear: int32(year), Cvc: req.CVC,
	})
	if err != nil {
		return err
	}
	pm := view.GetPaymentMethod()
	if pm == nil {
		pm = &messages.PaymentMethodView{}
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, pm)
}

func (s *Server) handleCustomerFeed(c *call) error {
	return s.poll(c, kindCustomer, c.who.ID)
}
