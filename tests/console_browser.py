# The web console in headless Chromium (Debian's chromium + chromium-driver,
# driven through WebDriver by python3-selenium), against `graphgate demo`.
# Called by tests/console.rs with:
#   argv[1] the one-time console link   argv[2] the admin base URL
#   argv[3] the simulator's URL         argv[4] the SMTP address host:port
#   argv[5] a directory for every page's HTML (the caller greps it for secrets)
#   argv[6] the directory for the screenshots (docs/console)
#   argv[7] the new account's local password
import json
import os
import re
import smtplib
import sys
import time
import urllib.request
from email.message import EmailMessage

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

link, admin, sim, smtp, pages_dir, shots, password = sys.argv[1:8]

options = webdriver.ChromeOptions()
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--window-size=1200,1900"):
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_page_load_timeout(60)
saved = 0


def save():
    """Keep this page's HTML for the caller's secret grep."""
    global saved
    saved += 1
    with open(os.path.join(pages_dir, "%03d.html" % saved), "w") as f:
        f.write(driver.current_url + "\n" + driver.page_source)


def wait_for(predicate, what, timeout=60, reload=False):
    """Poll (no fixed sleep decides anything) until predicate() holds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.3)
        if reload:
            driver.refresh()
    save()
    raise AssertionError("timed out waiting for %s on %s:\n%s"
                         % (what, driver.current_url, driver.page_source[:4000]))


def text():
    """The page's text; empty while a (self-)reload replaces the page."""
    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def sim_faults(body):
    request = urllib.request.Request(sim + "/_sim/faults", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
    urllib.request.urlopen(request).read()


try:
    # 1. The one-time link signs this browser in and lands on the dashboard.
    driver.get(link)
    wait_for(lambda: "Dashboard" in driver.title, "the dashboard")
    assert "alice@example.com" in text(), text()
    save()
    cookie = driver.get_cookie("graphgate_console")
    assert cookie and cookie["httpOnly"] and cookie.get("sameSite") == "Strict", cookie

    # 2. Add an account: a second local login for Bob's mailbox.
    driver.get(admin + "/accounts/new")
    save()
    driver.find_element(By.NAME, "login").send_keys("helpdesk")
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.NAME, "mailbox").send_keys("bob@example.com")
    driver.find_element(By.NAME, "aliases").send_keys("help@example.com")
    driver.find_element(By.CSS_SELECTOR, "form[action='/accounts'] button").click()
    wait_for(lambda: "Added helpdesk" in text(), "the account added")
    assert "NEEDS SIGN-IN" in text(), text()
    account_url = driver.current_url
    save()

    # 3. "Sign in with Microsoft": a new tab, the simulator's authorize page
    # (login_hint signs Bob in at once, as single sign-on would), back to
    # the admin listener's own redirect URI.
    assert "http://localhost:" in text(), "the redirect URI to register is shown"
    console_tab = driver.current_window_handle
    driver.find_element(By.CSS_SELECTOR, "button.microsoft").click()
    wait_for(lambda: len(driver.window_handles) == 2, "the sign-in tab")
    driver.switch_to.window([h for h in driver.window_handles if h != console_tab][0])
    wait_for(lambda: "Signed in" in driver.title or "failed" in driver.title,
             "the end of the sign-in")
    save()
    assert driver.title == "Signed in", text()
    assert "helpdesk is ONLINE" in text(), text()
    assert driver.current_url.startswith("http://localhost:"), driver.current_url
    # console.js takes the (redeemed) code out of the address bar.
    wait_for(lambda: "code=" not in driver.current_url, "the code gone from the URL")
    driver.close()
    driver.switch_to.window(console_tab)

    # 4. The dashboard shows it ONLINE.
    driver.get(admin + "/")
    wait_for(lambda: re.search(r"helpdesk\s+ONLINE", text()) is not None,
             "helpdesk ONLINE on the dashboard", reload=True)
    # Each account's share of Microsoft's per-mailbox budget: the
    # dashboard's own check of helpdesk's mailbox (Bob's) was a Graph
    # request of that mailbox.
    wait_for(lambda: re.search(r"helpdesk.*?Graph, last 10 minutes\s+([1-9][0-9]*) requests",
                               text(), re.S) is not None,
             "helpdesk's Graph requests on the dashboard", reload=True)
    save()
    driver.save_screenshot(os.path.join(shots, "dashboard.png"))
    driver.get(account_url)
    wait_for(lambda: "ONLINE" in text(), "the account page")
    save()
    driver.save_screenshot(os.path.join(shots, "account.png"))

    # 4b. The device-code alternative, on Alice's page: the page shows the
    # code and its countdown; the user approves it on "another device"
    # (the simulator's control endpoint plays that device).
    driver.get(admin + "/accounts/alice%40example.com")
    driver.find_element(By.CSS_SELECTOR, "form[action$='/device'] button").click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".device .code"), "the device code")
    save()
    user_code = driver.find_element(By.CSS_SELECTOR, ".device .code").text.strip()
    assert driver.find_elements(By.CSS_SELECTOR, ".countdown[data-seconds]"), text()
    request = urllib.request.Request(
        sim + "/_sim/devicelogin",
        data=json.dumps({"user_code": user_code, "user": "alice@example.com",
                         "approve": True}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request).read()
    wait_for(lambda: "Signed in as alice@example.com" in text(), "the device sign-in",
             timeout=90, reload=True)
    save()
    driver.get(account_url)

    # 5. Edit: keep-fetched off, sender policy rewrite.
    Select(driver.find_element(By.NAME, "sender_policy")).select_by_value("rewrite")
    driver.find_element(By.CSS_SELECTOR, "form[action$='/settings'] button").click()
    wait_for(lambda: "sender policy: rewrite" in text(), "the settings saved")
    save()

    # 6. Send test with read-back, from the new account to Alice.
    driver.get(admin + "/send-test")
    Select(driver.find_element(By.NAME, "from")).select_by_value("helpdesk")
    driver.find_element(By.NAME, "to").send_keys("alice@example.com")
    driver.find_element(By.CSS_SELECTOR, "form[action='/send-test'] button").click()
    wait_for(lambda: "send-test passed" in text() or "FAILED" in text(),
             "the send test's end", timeout=120, reload=True)
    save()
    assert "send-test passed" in text(), text()
    assert "read-back" in text(), text()

    # 7. A message that waits: Graph answers 503 to everything, SMTP still
    # takes it (250) and the spool keeps it.
    sim_faults({"error_rate": 1.0})
    host, port = smtp.rsplit(":", 1)
    message = EmailMessage()
    message["From"] = "alice@example.com"
    message["To"] = "bob@example.com"
    message["Subject"] = "console queue test"
    message.set_content("wait for me")
    with smtplib.SMTP(host, int(port)) as s:
        s.login("alice@example.com", "alice")
        s.send_message(message)
    driver.get(admin + "/queue")
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "td a[href^='/queue/']"),
             "a waiting message", reload=True)
    save()
    driver.find_element(By.CSS_SELECTOR, "td a[href^='/queue/']").click()
    message_url = driver.current_url

    # CSRF: the retry form without its token is refused (403), in the
    # browser with its real session cookie.
    driver.execute_script(
        "document.querySelector(\"form[action$='/retry'] input[name=csrf]\").remove()")
    driver.find_element(By.CSS_SELECTOR, "form[action$='/retry'] button").click()
    wait_for(lambda: "CSRF" in text(), "the CSRF refusal")
    save()
    assert "Nothing was changed" in text(), text()

    # Retry (with its token), then drop once it is queued again.
    driver.get(message_url)
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "form[action$='/retry'] button"),
             "the retry button", reload=True)
    driver.find_element(By.CSS_SELECTOR, "form[action$='/retry'] button").click()
    wait_for(lambda: "due now" in text(), "the retry")
    save()
    assert "1 message(s) due now" in text(), text()

    def dropped():
        driver.get(message_url)
        state = driver.find_element(By.XPATH, "//dt[text()='State']/following-sibling::dd[1]")
        # Dropped by an earlier poll whose answer page was not read in
        # time (a loaded machine): done.
        if state.text == "dropped":
            return True
        if state.text != "queued":
            return False
        driver.find_element(By.NAME, "confirm").click()
        driver.find_element(By.CSS_SELECTOR, "form[action$='/drop'] button").click()
        return "dropped" in text() and "will not be delivered" in text()

    wait_for(dropped, "the drop", timeout=90)
    save()
    sim_faults({"error_rate": 0.0})

    # 8. Doctor shows its checks with fixes.
    driver.get(admin + "/doctor")
    wait_for(lambda: "Doctor" in driver.title, "the doctor page")
    save()
    print("console browser test: all steps passed")
finally:
    driver.quit()
