"""The offline extractor's rules as a user sees them in the snapshot, through the real extraction path."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.extraction.conftest import post
from tests.factories import make_session

pytestmark = pytest.mark.django_db

PLAN = ("Here's the plan:\n1. Back up the database\n2. Upgrade PostgreSQL to 16\n3. Run the test suite\n"
        "4. Switch traffic over")


def _replay(extract, *turns, mode="planning"):
    session = make_session("offline-rules", mode=mode)
    for user, assistant in turns:
        post(session, ("user", user), ("assistant", assistant))
        extract(session)
    return session


def test_questions_and_meta_remarks_never_replace_the_goal(extract):
    session = _replay(
        extract,
        ("Hi! Our reporting server runs PostgreSQL 12 and I need it on 16 before the end of March.", PLAN),
        ("Actually, how should I hunt down the extensions that won't survive it?", "Run pg_upgrade --check first."),
        ("Actually, let's change the approach.", "Sure, we can do it with logical replication instead."),
    )
    assert "PostgreSQL 12" in session.goal and "16" in session.goal
    assert "hunt" not in session.goal and "approach" not in session.goal


def test_a_goal_change_keeps_the_new_goal_and_a_step_change_leaves_the_goal(extract):
    session = _replay(
        extract,
        ("I want to plan a week of hiking in the Dolomites in July.",
         "Plan:\n1. Book huts\n2. Buy a via ferrata kit\n3. Book the train to Bolzano"),
        ("Actually I'd rather take the bus to Bolzano instead of the train.",
         "Plan:\n1. Book huts\n2. Buy a via ferrata kit\n3. Book the bus to Bolzano"),
    )
    assert session.goal.startswith("I want to plan a week of hiking in the Dolomites")  # a step changed
    post(session, ("user", "Change of plans: my knee is bad, so we'll do a week of hiking in Slovenia's "
                           "lakes instead of the Dolomites."), ("assistant", "Good idea, the lake trails are gentle."))
    extract(session)
    assert "Slovenia" in session.goal and "Dolomites" in session.goal  # the new goal, then the earlier one


def test_progress_stated_in_other_words_and_undone_steps(extract):
    session = _replay(
        extract,
        ("We need to upgrade our reporting database to PostgreSQL 16.", PLAN),
        ("✅ step 1. The upgrade to 16 went through overnight.", "Great, run the tests next."),
    )
    assert session.progress == ["Back up the database", "Upgrade PostgreSQL to 16"]
    post(session, ("user", "Bad news, we rolled back the upgrade, the app couldn't connect."),
         ("assistant", "Then we retry after fixing the driver."))
    extract(session)
    assert session.progress == ["Back up the database"]


def test_progress_in_spanish_german_and_french(extract):
    for n, (request, plan, report, done) in enumerate([
        ("Quiero pintar el salón este mes.", "Pasos:\n1. Comprar la pintura\n2. Proteger el suelo\n3. Pintar",
         "Ya compré la pintura, dos botes de blanco.", ["Comprar la pintura"]),
        ("Ich möchte mein Fahrrad für den Sommer fertig machen.",
         "Vorschlag:\n1. Die Kette reinigen\n2. Die Bremsen einstellen\n3. Die Reifen aufpumpen",
         "Die Kette ist sauber und die Bremsen habe ich eingestellt.",
         ["Die Kette reinigen", "Die Bremsen einstellen"]),
        ("Ich muss die Winterreifen vor Dezember wechseln lassen.",
         "So geht's:\n1. Einen Termin in der Werkstatt buchen\n2. Die Reifen aus dem Keller holen\n3. Die Reifen "
         "aufpumpen",
         "Der Termin ist gebucht. Die Reifen sind aufgepumpt.",
         ["Einen Termin in der Werkstatt buchen", "Die Reifen aufpumpen"]),
        ("Je veux préparer mon potager pour le printemps.",
         "Voici les étapes :\n1. Désherber les planches\n2. Ajouter du compost\n3. Semer les radis",
         "C'est fait pour le compost, j'en ai mis deux brouettes.", ["Ajouter du compost"]),
    ]):
        session = make_session(f"offline-lang-{n}", mode="planning")
        post(session, ("user", request), ("assistant", plan))
        extract(session)
        post(session, ("user", report), ("assistant", "👍"))
        extract(session)
        assert session.goal and sorted(session.progress) == sorted(done), (session.goal, session.progress)


def test_the_summary_keeps_names_numbers_and_decisions_and_stays_within_its_bound(extract):
    turns = [("I need to move the billing service off Heroku before 30 June; the bill is 2,400 dollars a month.",
              "Fly.io or a Hetzner VM would both cost under 300 dollars a month.")]
    turns += [(f"Ok, noted point {i}.", f"Sure, more general advice number {i} about hosting.") for i in range(40)]
    turns += [("We decided on Hetzner, CX42 in Falkenstein.", "Good choice.")]
    session = _replay(extract, *turns, mode="summary")
    assert len(session.summary) <= settings.SESSIONCTX_SUMMARY_CHARS
    for fact in ("Heroku", "30 June", "2,400", "Hetzner", "CX42", "Falkenstein"):
        assert fact in session.summary, fact
    assert session.summary.startswith("User: I need to move the billing service off Heroku")


def test_past_its_bound_the_summary_keeps_what_the_user_told_over_the_assistant_s_advice(extract):
    turns = [("I need to move the billing service off Heroku.", "Fly.io or a Hetzner VM would both work.")]
    turns += [(f"Our contact for region {i} is Dana Kowalski, ext {100 + i}, from Monday.",
               f"On point {i}: Terraform 1.9 keeps State in S3 with a DynamoDB Lock Table.") for i in range(30)]
    session = _replay(extract, *turns, mode="summary")
    assert len(session.summary) <= settings.SESSIONCTX_SUMMARY_CHARS
    told = session.summary.count("Dana Kowalski")
    advised = session.summary.count("DynamoDB")
    assert told > advised, session.summary


def test_a_report_that_names_no_step_is_about_the_step_the_assistant_just_discussed(extract):
    session = _replay(
        extract,
        ("Our reporting server runs PostgreSQL 12 and I need it on 16 before the end of March.", PLAN),
        ("The backup is done, 40 GB.", "Good. For the upgrade itself, run pg_upgrade --check first, then --link."),
        ("That part's sorted, no problems at all.", "Great, now the test suite."),
    )
    assert session.progress == ["Back up the database", "Upgrade PostgreSQL to 16"]


def test_a_choice_made_completes_the_step_that_asks_for_it(extract):
    session = _replay(
        extract,
        ("We want to launch a podcast about bootstrapped startups in six weeks.",
         "Plan:\n1. Choose a name and format\n2. Buy two USB microphones\n3. Record three pilot episodes"),
        ("We settled on 'Ramen Profitable', 30-minute interviews.", "Good name."),
    )
    assert session.progress == ["Choose a name and format"]


def test_a_how_to_list_in_a_later_reply_is_not_a_new_plan_and_a_revised_plan_is(extract):
    session = _replay(
        extract,
        ("We need to upgrade our reporting database to PostgreSQL 16.", PLAN),
        ("Backed up the database last night, 40 GB dump.",
         "Good. If the upgrade fails, recover like this:\n1. Stop the app\n2. Restore the dump with pg_restore -j 4\n"
         "3. Start the app on the old cluster"),
    )
    assert session.plan[0] == "Back up the database" and len(session.plan) == 4  # instructions, not a plan
    assert session.progress == ["Back up the database"]
    post(session, ("user", "Our DBA says we must test on a replica first."),
         ("assistant", "Revised plan:\n1. Back up the database\n2. Upgrade a replica and test it\n"
                       "3. Upgrade PostgreSQL to 16\n4. Switch traffic over"))
    extract(session)
    assert session.plan[1] == "Upgrade a replica and test it" and session.progress == ["Back up the database"]


def test_skipped_half_done_and_intended_steps_are_not_done(extract):
    plan = ("Here's a plan:\n1. Find the hold notice and note the case number\n2. Upload proof of identity\n"
            "3. Add tracking numbers to all open orders\n4. Ask for a partial release\n5. Order new packaging")
    session = _replay(
        extract,
        ("Makerly has put my payouts on hold. How do I get the hold lifted?", plan),
        ("I've put tracking on 31 of the 38 orders, the rest went without.", "The last 7 matter less."),
        ("Didn't need to ask for the partial release, the hold was lifted this morning!", "Great news."),
        ("I'll order the new packaging tomorrow.", "Good."),
    )
    assert session.progress == []  # 31 of 38, not needed, only intended
    post(session, ("user", "Found the notice, case MKR-60214. Uploaded my passport too."), ("assistant", "Good."))
    extract(session)
    assert session.progress == ["Find the hold notice and note the case number", "Upload proof of identity"]


def test_the_goal_is_the_wish_not_its_reason_nor_a_passing_actually(extract):
    session = _replay(
        extract,
        ("Hi, I sell ceramics on Makerly. They put my payouts on hold and £2,340 is stuck there. I need that money "
         "for clay and postage. How do I get the hold lifted?", PLAN),
        ("Sent the documents, we'd never actually been asked for them before.", "Good."),
    )
    assert session.goal == "Get the hold lifted"
    post(session, ("user", "Change of direction, sorry. The hold is gone. She wants us to move the shop to Etsy "
                           "instead: fees, reviews, all of it."), ("assistant", "Understood."))
    extract(session)
    assert session.goal.startswith("She wants us to move the shop to Etsy")


def test_a_day_of_the_month_does_not_end_a_sentence(extract):
    session = _replay(
        extract,
        ("Wir ziehen nach Berlin und müssen die Wohnung in Köln kündigen.",
         "So würde ich vorgehen:\n1. Die Wohnung kündigen\n2. Eine Umzugsfirma buchen"),
        ("Kündigung am 4. Oktober verschickt.", "Gut, dann die Umzugsfirma."),
    )
    assert session.progress == ["Die Wohnung kündigen"]


def test_a_status_recap_in_a_later_reply_is_not_a_new_plan(extract):
    session = _replay(
        extract,
        ("We need to upgrade our reporting database to PostgreSQL 16.", PLAN),
        ("Backed up the database last night, 40 GB dump.",
         "Where you are on the plan:\n- The database is backed up (40 GB).\n- The upgrade to PostgreSQL 16 is still "
         "to do.\n- The test suite has not been run yet."),
    )
    assert session.plan == ["Back up the database", "Upgrade PostgreSQL to 16", "Run the test suite",
                            "Switch traffic over"]
    assert session.progress == ["Back up the database"]


def test_the_english_he_is_not_a_spanish_report_of_done(extract):
    session = _replay(
        extract,
        ("We're moving to Toronto with our dog Biscuit.",
         "Here's the plan:\n1. Sell the car\n2. Book the flights\n3. Sort out Biscuit's travel"),
        ("He's 11, he gets anxious in the car.", "Then flying may be hard on him."),
    )
    assert session.progress == []


def test_an_ordinal_after_an_article_does_not_end_a_sentence(extract):
    session = _replay(
        extract,
        ("Hallo! Ich studiere Biologie im 5. Semester an der Uni Göttingen und will im Wintersemester ein "
         "Auslandssemester in Schweden machen, am liebsten in Lund. Kannst du mir helfen?",
         "So würde ich vorgehen:\n1. Mit dem Erasmus-Büro sprechen\n2. Die Bewerbung abgeben"),
    )
    assert "Auslandssemester in Schweden" in session.goal


VAN = ("Here's the plan:\n1. Strip out the cargo area\n2. Insulate with sheep wool\n3. Fit a diesel heater\n"
       "4. Build a rock-and-roll bed\n5. Collect the money for the parts from everyone")


def test_what_comes_next_is_under_way_or_is_all_but_done_is_not_done(extract):
    session = _replay(
        extract,
        ("We're converting our van into a weekend camper.", VAN),
        ("Cargo area is stripped.", "Great, you're now ready for the insulation."),
        ("Sam found a rock-and-roll bed on Marketplace, we're collecting it Saturday.", "Nice find."),
        ("Everyone has paid for the parts except Elena and Marta.", "Almost there."),
    )
    assert session.progress == ["Strip out the cargo area"]


def test_a_step_taken_back_out_is_undone_and_works_well_is_not_we_will(extract):
    session = _replay(
        extract,
        ("We're converting our van into a weekend camper.", VAN),
        ("Fitted the diesel heater this weekend.", "Good. Fit a CO alarm too."),
        ("The heater leaked fumes, so I've taken the whole heater back out.", "The right call."),
    )
    assert session.progress == []
    post(session, ("user", "Cargo area is stripped."), ("assistant", "That covers the strip-out. Wool works well."))
    extract(session)
    assert session.progress == ["Strip out the cargo area"]


def test_a_negated_contraction_or_a_date_ahead_is_not_a_report_of_done(extract):
    session = _replay(
        extract,
        ("We're planning a street party in June.",
         "Here's the plan:\n1. Book a bouncy castle\n2. Send the road closure form\n3. Turn on the street alert\n"
         "4. Book a band"),
        ("The bouncy castle firm wasn't insured, so it isn't booked any more.", "Better to know now."),
        ("The road closure form gets sent in two weeks.", "Good."),
        ("Turned on the street alert.", "Great."),
    )
    assert session.progress == ["Turn on the street alert"]
    post(session, ("user", "Booked a band. The street alert spammed everyone, so I switched the alert off again."),
         ("assistant", "While you wait, book the band's parking too."))
    extract(session)
    assert session.progress == ["Book a band"]


def test_a_goal_is_never_a_bare_announcement_an_aside_or_a_two_word_opener(extract):
    session = _replay(
        extract,
        ("urgent-ish. we got an email from a researcher saying our S3 bucket ll-exports is publicly readable.",
         "Here's the plan:\n1. Block public access on the bucket\n2. List affected customers"),
        ("The tree surgeon says build on posts. Kids don't care as long as there's a slide.", "Fine."),
    )
    assert session.goal.startswith("we got an email from a researcher"), session.goal
    post(session, ("user", "Sooo slight change of direction. Our advisor thinks VCs are a stretch. "
                           "So new target: £350k, angels + Crowdcube."), ("assistant", "Understood."))
    extract(session)
    assert session.goal.startswith("£350k, angels + Crowdcube."), session.goal


def test_past_its_bound_the_summary_shortens_sentences_before_it_drops_them_and_keeps_dates_whole(extract):
    turns = [("Ich habe mich für den Köln-Halbmarathon am 4. Oktober angemeldet, mein Ziel sind unter 2 Stunden.",
              "Gut, dann planen wir drei Läufe pro Woche.")]
    turns += [(f"Lauf {i}: 8 km in Köln mit Jonas Berger, ganz locker, ohne große Lust, bei ziemlich viel Wind.",
               "Weiter so.") for i in range(30)]
    session = _replay(extract, *turns, mode="summary")
    assert len(session.summary) <= settings.SESSIONCTX_SUMMARY_CHARS
    assert "am 4. Oktober angemeldet" in session.summary, session.summary
    assert session.summary.count("Jonas Berger") >= 8, session.summary  # the asides went first, not the runs


SHED = ("Here's the plan:\n1. Fix the roof leak\n2. Get an electrician to run a supply from the house\n"
        "3. Buy a desk and a chair\n4. Furnish it and set up the desk\n5. Tell the neighbours about the work\n"
        "6. Enrol on the woodwork course")


def test_an_arrival_or_a_talk_only_does_a_step_that_gets_a_thing_or_talks_to_someone(extract):
    session = _replay(
        extract,
        ("I'm turning the shed at the bottom of the garden into an office.", SHED),
        ("The desk arrived today, it's in the hallway in a massive box.", "Good, assemble it in the shed."),
        ("Talked to the woodwork tutor about the course dates.", "Sign up when you know."),
    )
    assert session.progress == ["Buy a desk and a chair"]  # not set up, not enrolled
    post(session, ("user", "Spoke to the neighbours, they're fine with the noise."), ("assistant", "Good."))
    extract(session)
    assert session.progress == ["Buy a desk and a chair", "Tell the neighbours about the work"]


def test_a_condition_not_met_or_an_attempt_is_not_done_and_a_later_full_report_wins(extract):
    session = _replay(
        extract,
        ("I'm turning the shed at the bottom of the garden into an office.", SHED),
        ("Nobody goes in there until the roof leak is fixed.", "Sensible."),
        ("I tried to book an electrician, but the first two were full.", "Try a third."),
    )
    assert session.progress == []
    post(session, ("user", "The roof leak was mostly from the felt. Fixed the roof leak completely now."),
         ("assistant", "Good."))
    extract(session)
    assert session.progress == ["Fix the roof leak"]  # partly, then fully: the later words win


def test_a_goal_said_outright_in_a_later_message_is_the_goal(extract):
    session = _replay(
        extract,
        ("I want to get rid of the price field in the June release.",
         "Plan:\n1. Log which clients still query price\n2. Email the integrators\n3. Remove the field"),
        ("June's off, the mobile apps can't update in time. Goal is to get every client onto priceMoney while keeping "
         "price working for old app versions.", "Then we deprecate price instead of removing it."),
    )
    assert session.goal.startswith("Get every client onto priceMoney while keeping price working for old app versions")
    assert "June release" in session.goal  # the earlier goal after it


def test_what_is_done_for_now_is_not_done(extract):
    session = _replay(
        extract,
        ("We need to upgrade our reporting database to PostgreSQL 16.", PLAN),
        ("For now I've upgraded PostgreSQL on the replica only.", "Fine, the primary next."),
    )
    assert session.progress == []


def test_a_spanish_perfect_with_ha_or_han_reports_done(extract):
    session = _replay(
        extract,
        ("Organizo la despedida de soltera de Lucía en Lisboa.",
         "Plan:\n1. Confirmar la fecha del 23 al 25 de mayo con todas\n2. Reservar el apartamento\n"
         "3. Reservar una cena con fado"),
        ("Vale, todas han dicho que sí al 23-25 en el grupo.", "¡Genial!"),
    )
    assert session.progress == ["Confirmar la fecha del 23 al 25 de mayo con todas"]


def test_an_approval_reports_a_step_that_asks_for_permission(extract):
    session = _replay(
        extract,
        ("We're organising a charity relay along the canal towpath.",
         "Plan:\n1. Get permission from the Canal & River Trust\n2. Recruit marshals\n3. Set up team entries online"),
        ("The approval letter came through today, with a marshal at each bridge.", "Brilliant."),
    )
    assert session.progress == ["Get permission from the Canal & River Trust"]


def test_the_assistant_confirms_a_step_in_a_participle_or_a_recap_list_but_not_in_advice(extract):
    session = _replay(
        extract,
        ("We need to upgrade our reporting database to PostgreSQL 16.", PLAN),
        ("Snapshot taken, I checked the restore on a spare box.",
         "Good, so the database backup is verified. The switch over is no longer needed if you keep one host."),
    )
    assert session.progress == ["Back up the database"]
    post(session, ("user", "The PostgreSQL upgrade finished, no errors."),
         ("assistant", "Where things stand:\n- Test suite: done on the new version\n- Traffic: still on 12"))
    extract(session)
    assert set(session.progress) == {"Back up the database", "Upgrade PostgreSQL to 16", "Run the test suite"}


def test_a_step_confirmed_by_the_assistant_in_spanish(extract):
    session = _replay(
        extract,
        ("Queremos abrir una cafetería en Granada.",
         "Plan:\n1. Pedir la cédula urbanística\n2. Presentar la declaración responsable de obra\n"
         "3. Solicitar la licencia de terraza"),
        ("Marta lo tiene todo en marcha.",
         "Resumiendo: la cédula urbanística y la declaración responsable de obra ya están hechas."),
    )
    assert set(session.progress) == {"Pedir la cédula urbanística", "Presentar la declaración responsable de obra"}


def test_a_german_condition_in_the_assistant_reply_is_not_a_confirmation(extract):
    session = _replay(
        extract,
        ("Wir ziehen von Jenkins auf GitLab CI um.",
         "Plan:\n1. Runner installieren\n2. Pipeline für das Backend schreiben\n3. Jenkins abschalten"),
        ("Runner ist installiert.", "Gut. Sobald die Pipeline für das Backend grün ist, ist Jenkins fertig."),
    )
    assert session.progress == ["Runner installieren"]


def test_a_report_followed_by_what_someone_else_will_do_and_a_choice_gone_with(extract):
    session = _replay(
        extract,
        ("I've bought a van that I'm turning into a food truck.",
         "Plan:\n1. Choose a trading name\n2. Register the truck with the council\n3. Book a gas safety check"),
        ("Done the registration on the council website tonight, they said an officer will be in touch.",
         "Great, that starts the inspection clock."),
        ("I've gone with Smokestack BBQ for the name.", "Good name."),
    )
    assert session.progress == ["Register the truck with the council", "Choose a trading name"]


def test_two_shared_words_pick_the_shorter_step_they_cover(extract):
    session = _replay(
        extract,
        ("Our nightly copy of the orders table to BigQuery takes four hours.",
         "Plan:\n1. Create a staging table in BigQuery\n2. Run a MERGE from the staging table into the final orders "
         "table\n3. Schedule the load every hour"),
        ("Staging table done.", "Good."),
    )
    assert session.progress == ["Create a staging table in BigQuery"]


@pytest.mark.parametrize("report", [
    "Le ferry, on le réservera une autre année.",
    "El ferry lo reservaremos la semana del puente.",
    "Die Fähre werde ich im Juni gleich nach der Prüfung gebucht haben.",
])
def test_a_step_in_the_future_tense_is_not_done(extract, report):
    session = _replay(
        extract,
        ("We're planning a trek in Corsica.",
         "Plan:\n1. Book the ferry to Calvi\n2. Book the refuges\n3. Do three training hikes"),
        (report, "OK."),
    )
    assert session.progress == []


def test_a_meeting_or_a_phone_call_with_a_time_does_only_a_step_that_talks_to_someone(extract):
    session = _replay(
        extract,
        ("We're bidding for a heritage grant to digitise the town's photo archive.",
         "Plan:\n1. Get the trustees to sign off the bid\n2. Enrol two volunteers in the scanning course\n"
         "3. Tell the local paper about the project"),
        ("Had a trustees' meeting last night. I phoned the college about the scanning course this morning.",
         "Good."),
    )
    assert session.progress == []
    post(session, ("user", "Rang the local paper yesterday, they'll run a piece."), ("assistant", "Great."))
    extract(session)
    assert session.progress == ["Tell the local paper about the project"]


def test_a_find_does_only_a_step_that_finds_gets_or_chooses(extract):
    session = _replay(
        extract,
        ("My annual Framekit plan renewed and I want the difference back.",
         "Plan:\n1. Email support asking for a refund\n2. Cancel auto-renew in the settings\n"
         "3. Confirm the refund on your card statement"),
        ("Found the email from support about the renewal.", "Good, keep it."),
    )
    assert session.progress == []


def test_a_german_step_ends_on_its_verb(extract):
    session = _replay(
        extract,
        ("Ich will den Sportbootführerschein See machen.",
         "Plan:\n1. Eine Segelschule für den SBF See aussuchen\n2. Theorie für den SBF See lernen\n"
         "3. Ärztliches Attest besorgen"),
        ("Die Yachtschule Seewind in Lindau hab ich gefunden, die macht den SBF See.", "Super."),
    )
    assert session.progress == ["Eine Segelschule für den SBF See aussuchen"]


@pytest.mark.parametrize("report", [
    "La hoja de reclamaciones la he aparcado.",
    "The complaint form at the consumer office: I've parked that.",
])
def test_a_step_parked_is_not_done(extract, report):
    session = _replay(
        extract,
        ("My gym kept charging me after I cancelled.",
         "Plan:\n1. Gather the cancellation receipt\n2. Write to the gym\n"
         "3. Fill in the complaint form (hoja de reclamaciones) at the consumer office"),
        (report, "OK."),
    )
    assert session.progress == []


@pytest.mark.parametrize("empty_item", ["1.  ", "1. **", "1. `` ", "- Step 1:"])
def test_a_list_item_with_nothing_in_it_is_skipped_not_a_failed_run(extract, empty_item):
    # An item of spaces or markdown alone cleaned to an empty step, which no snapshot may hold: the whole update
    # failed ("invalid snapshot") and the context kept nothing of the conversation.
    session = make_session("offline-empty-item")
    post(session, ("user", "I need a trip to Lisbon in May."),
         ("assistant", f"Here's the plan:\n{empty_item}\n2. Book the flights\n3. Book the hotel"))
    run = extract(session)
    assert (run.status, run.error) == ("succeeded", "")
    assert session.plan == ["Book the flights", "Book the hotel"]
