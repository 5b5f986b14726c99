-- A user's demographic vector in content space p_space, or NULL when the user has none or has no demographic
-- field at all: such a user's prompt ("A person.") is everyone's, so their demographic neighbours would be
-- arbitrary (revision 0015). rec._recommend_main (which then serves popularity) and rec.explain share this rule.
CREATE OR REPLACE FUNCTION rec._demographic_vector(p_space integer, p_user text)
RETURNS vector
LANGUAGE sql STABLE AS $fn$
    SELECT t.embedding FROM rec.user_embeddings t JOIN rec.users u ON u.user_id = t.user_id
    WHERE t.space_id = p_space AND t.user_id = p_user AND t.kind = 'demographic'
      AND (u.age IS NOT NULL OR u.gender IS NOT NULL OR u.occupation IS NOT NULL OR u.zip_code IS NOT NULL)
$fn$;
